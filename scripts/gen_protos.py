"""Regenerate the Python code for protos/ into common/proto/ (the one command for it).

    python scripts/gen_protos.py [--out DIR]

Generated modules import each other as `common.proto.ghpulse.v1.*`; protoc writes `ghpulse.v1.*`,
so imports are rewritten after generation (as temporalio's generator does).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
DEFAULT_OUT = ROOT / "common" / "proto"
PACKAGE_PREFIX = "common.proto."
_IMPORT = re.compile(r"^(from|import) ghpulse\.v1", re.MULTILINE)


def _plugin(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install the dev dependencies (mypy-protobuf)")
    return found


def generate(out: Path) -> None:
    """Write the generated package to `out` (replacing its ghpulse/ folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTOS}",
                f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
                f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                f"--mypy_out={tmp}",
                f"--mypy_grpc_out={tmp}",
                *protos,
            ],
            check=True,
        )
        target = out / "ghpulse"
        shutil.rmtree(target, ignore_errors=True)
        for path in sorted(Path(tmp).rglob("*.py*")):
            dest = out / path.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(_IMPORT.sub(rf"\1 {PACKAGE_PREFIX}ghpulse.v1", path.read_text()))
        for folder in (target, target / "v1"):
            (folder / "__init__.py").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
