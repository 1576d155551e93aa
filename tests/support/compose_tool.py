"""A `docker-compose` executable to validate compose.yaml with (`docker-compose config`): the one
on PATH, else the PyPI package installed once into `.venv/tools/docker-compose`. docker-compose
1.29's declared pins (PyYAML < 6, python-dotenv < 1) cannot share this project's environment and
PyYAML 5 does not build on current Pythons, so it gets an environment of its own, with PyYAML 6
and its other requirements pinned as it declares them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT

TOOL_DIR = ROOT / ".venv" / "tools" / "docker-compose"
#: docker-compose 1.29.2's requirements, except PyYAML (any 6.x parses compose files the same).
REQUIREMENTS = (
    "pyyaml>=6",
    "docopt>=0.6.1,<1",
    "jsonschema>=2.5.1,<4",
    "requests>=2.20,<3",
    "texttable>=0.9,<2",
    "websocket-client>=0.32,<1",
    "docker>=5.0.0,<7",
    "dockerpty>=0.4.1,<1",
    "python-dotenv>=0.13,<1",
    "distro>=1.5,<2",
    "setuptools<70",
)


def docker_compose() -> Path:
    """The executable's path, installing it on first use (raises CalledProcessError if pip
    cannot reach the package index)."""
    found = shutil.which("docker-compose")
    if found is not None:
        return Path(found)
    executable = TOOL_DIR / "bin" / "docker-compose"
    if executable.exists():
        return executable
    subprocess.run([sys.executable, "-m", "venv", str(TOOL_DIR)], check=True)
    pip = [str(TOOL_DIR / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *REQUIREMENTS], check=True, capture_output=True, timeout=600)
    subprocess.run([*pip, "--no-deps", "docker-compose==1.29.2"], check=True, timeout=600)
    return executable
