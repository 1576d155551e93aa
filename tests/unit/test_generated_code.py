"""The committed generated protobuf code is what `scripts/gen_protos.py` produces from protos/, and
the protos pass `buf lint` with the standard rules."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = ROOT / "common" / "proto" / "ghpulse"
    fresh = tmp_path / "ghpulse"
    assert _files(fresh) == _files(committed)
    stale = [
        name
        for name in sorted(_files(fresh))
        if not filecmp.cmp(fresh / name, committed / name, shallow=False)
    ]
    assert stale == [], "run: python scripts/gen_protos.py"


def test_protos_pass_buf_lint() -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    if buf is None:
        pytest.fail("buf is missing: it is a dev dependency (buf-bin)")
    result = subprocess.run([buf, "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
