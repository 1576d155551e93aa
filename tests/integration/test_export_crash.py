"""A process killed (`kill -9`) in the middle of an export: its temporary file never shows among the
exports, and the next crawler start removes it (while a live writer's file stays)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from crawler_service.jobs.steps.export import STAGING, clean_staging, write_atomic

#: Writes half an export, says so through a marker file, then waits to be killed.
WRITER = """
import sys, time
from pathlib import Path
from crawler_service.jobs.steps.export import write_atomic

def write(file):
    file.write("repository,number\\nacme/widgets,1\\n")
    file.flush()
    Path(sys.argv[2]).touch()
    time.sleep(60)

write_atomic(Path(sys.argv[1]) / "acme" / "widgets.csv", write, Path(sys.argv[1]) / ".staging")
"""


def visible_files(export_dir: Path) -> list[str]:
    """What a reader walking the export directory sees, hidden staging directory aside."""
    return sorted(
        str(p.relative_to(export_dir))
        for p in export_dir.rglob("*")
        if p.is_file() and STAGING not in p.relative_to(export_dir).parts
    )


def kill_writer_mid_export(export_dir: Path) -> None:
    marker = export_dir.parent / "half-written"
    root = Path(__file__).resolve().parents[2]
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(export_dir), str(marker)],
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert writer.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)


def _write_old(file: IO[str]) -> None:
    file.write("old\n")


def test_an_export_killed_midway_leaves_nothing_visible_and_start_up_removes_it(tmp_path: Path):
    export_dir = tmp_path / "exports"
    old = export_dir / "acme" / "widgets.csv"
    write_atomic(old, _write_old, export_dir / STAGING)
    kill_writer_mid_export(export_dir)

    assert visible_files(export_dir) == ["acme/widgets.csv"]
    assert (export_dir / "acme" / "widgets.csv").read_text() == "old\n"
    assert len(list((export_dir / STAGING).iterdir())) == 1  # the dead writer's leftover
    removed = clean_staging(export_dir)
    assert len(removed) == 1
    assert list((export_dir / STAGING).iterdir()) == []


def test_start_up_keeps_the_file_a_live_crawler_is_writing(tmp_path: Path):
    staging = tmp_path / STAGING
    staging.mkdir()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        writing = staging / f"{socket.gethostname()}.{live.pid}.abc.tmp"
        writing.write_text("half")
        try:
            assert clean_staging(tmp_path) == []
            assert writing.exists()
        finally:
            live.kill()
    live.wait(10)
    assert clean_staging(tmp_path) == [writing]
