"""The wheel, as a user gets it: built from exactly the files the Dockerfile copies, installed into
a fresh venv that holds only the wheel and its dependencies, and run outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ghpulse", "common", "scheduler_service", "crawler_service")
#: pip builds and installs: generous, since a cold cache downloads the dependencies.
PIP_TIMEOUT = 600


def _run(*command: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH or VIRTUAL_ENV: nothing of the source tree or the test venv may leak in.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


def _dockerfile_copies() -> list[str]:
    """The sources of the Dockerfile's `COPY` lines (the image is built from these alone)."""
    sources: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--") for word in words):
            sources += words[1:-1]
    return sources


def _source_files(top: Path) -> set[str]:
    return {
        str(path.relative_to(top.parent))
        for path in top.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the Dockerfile copies, and the wheel built from it (in `dist/`)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in _dockerfile_copies():
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    _run(
        sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-w", tmp / "dist",
        cwd=tmp, timeout=PIP_TIMEOUT,
    )  # fmt: skip
    return tmp


@pytest.fixture(scope="module")
def wheel(build: Path) -> Path:
    (found,) = (build / "dist").glob("ghpulse-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(build: Path, wheel: Path) -> Path:
    """A fresh venv (no system site-packages) with the wheel and its dependencies only."""
    venv = build / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=build)
    _run(venv / "bin" / "python", "-m", "pip", "install", wheel, cwd=build, timeout=PIP_TIMEOUT)
    return venv


def test_dockerfile_copies_every_package() -> None:
    assert set(PACKAGES) <= set(_dockerfile_copies())


def test_wheel_holds_every_source_file(wheel: Path) -> None:
    """Modules, `.pyi` stubs, `py.typed`, the migrations' templates and the fake GitHub's sample."""
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    missing = {name for top in PACKAGES for name in _source_files(ROOT / top)} - shipped
    assert missing == set()


def test_ghpulse_help_from_the_venv(venv: Path, tmp_path: Path) -> None:
    result = _run(venv / "bin" / "ghpulse", "--help", cwd=tmp_path)
    assert "Usage: ghpulse" in result.stdout


def test_public_client_api_from_the_venv(venv: Path, tmp_path: Path) -> None:
    code = (
        "import ghpulse\n"
        "from ghpulse import CrawlSpec, GhpulseClient, SyncGhpulseClient\n"
        "print(ghpulse.__file__)\n"
    )
    result = _run(venv / "bin" / "python", "-c", code, cwd=tmp_path)
    assert Path(result.stdout.strip()).is_relative_to(venv)


def test_demo_from_the_venv(venv: Path, tmp_path: Path) -> None:
    """The migrations and the bundled sample data work as installed: `ghpulse demo` crawls."""
    result = _run(venv / "bin" / "ghpulse", "demo", "--dir", tmp_path / "demo", cwd=tmp_path)
    assert "ghpulse-demo/api" in result.stdout
