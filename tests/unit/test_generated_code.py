"""The committed generated protobuf code is what `scripts/gen_protos.py` produces from protos/, the
protos pass `buf lint` with the standard rules, and `buf breaking` finds no wire or source break
against the protos as first released."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The protos before plugin jobs, built with
#: `buf build '.git#ref=30479c0,subdir=protos' --exclude-source-info -o tests/data/protos-v1.binpb`.
BASELINE = ROOT / "tests" / "data" / "protos-v1.binpb"


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


def _buf() -> str:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    if buf is None:
        pytest.fail("buf is missing: it is a dev dependency (buf-bin)")
    return buf


def test_protos_pass_buf_lint() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_protos_keep_compatibility_with_the_first_release() -> None:
    command = [_buf(), "breaking", "--against", str(BASELINE)]
    result = subprocess.run(command, cwd=ROOT / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
