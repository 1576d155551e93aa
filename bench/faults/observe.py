"""What a case looks at: a watcher following the run through every restart, the run's stored
event log, the crawled rows and the export files."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from faults.cluster import while_pg_is_full

TERMINAL = {runs_pb2.RUN_STATE_SUCCEEDED, runs_pb2.RUN_STATE_FAILED, runs_pb2.RUN_STATE_CANCELLED}
#: Crawled tables compared with the fault-free crawl, less the columns recording when (not what)
#: something was stored or computed, and surrogate ids.
TABLES = ("repositories", "pull_requests", "reviews", "commits", "releases", "closing_links")
LOCAL = {
    "repositories": {"updated_at", "links_computed_at", "classified_at"},
    "closing_links": {"id"},
}


class Watcher(threading.Thread):
    """Follows a run to its end, reconnecting from the last seq seen whenever the stream breaks
    (the scheduler was killed, say). `phase()` is the step running now."""

    def __init__(self, address: str, run_id: str, timeout: float) -> None:
        super().__init__(daemon=True)
        self.address, self.run_id = address, run_id
        self.deadline = time.monotonic() + timeout
        self.seqs: list[int] = []
        self.reconnects = 0
        self.final_state: int | None = None
        self._step = "queued"

    def phase(self) -> str:
        return self._step

    def run(self) -> None:
        while self.final_state is None and time.monotonic() < self.deadline:
            after = self.seqs[-1] if self.seqs else 0
            try:
                with grpc.insecure_channel(self.address) as channel:
                    request = spb.WatchRunRequest(run_id=self.run_id, after_seq=after)
                    stream = SchedulerServiceStub(channel).WatchRun(
                        request, timeout=max(self.deadline - time.monotonic(), 1)
                    )
                    for message in stream:
                        self._on(message)
            except grpc.RpcError:
                self.reconnects += 1
                time.sleep(0.05)

    def _on(self, message: spb.WatchRunResponse) -> None:
        if not message.HasField("event"):
            return
        event = message.event
        self.seqs.append(event.seq)
        if event.HasField("step_started"):
            self._step = event.step_started.step
        elif event.HasField("step_finished"):
            self._step = f"after {event.step_finished.step}"
        elif event.state_changed.state in TERMINAL:
            self._step = "done"
            self.final_state = event.state_changed.state


def stored_events(address: str, run_id: str) -> tuple[runs_pb2.Run, list[runs_pb2.RunEvent]]:
    """The run and its whole stored event log."""
    with grpc.insecure_channel(address) as channel:
        stub = SchedulerServiceStub(channel)
        run = stub.GetRun(spb.GetRunRequest(run_id=run_id), timeout=10).run
        events = [
            m.event
            for m in stub.WatchRun(spb.WatchRunRequest(run_id=run_id), timeout=10)
            if m.HasField("event")
        ]
    return run, events


def event_problems(watcher: Watcher, events: list[runs_pb2.RunEvent]) -> list[str]:
    """One terminal state, seqs 1..N without a hole, and a watcher that saw every event but
    coalesced progress, each once and in order."""
    problems = []
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"stored seqs not contiguous: {seqs[:5]}…{seqs[-5:]}")
    terminal = [e for e in events if e.state_changed.state in TERMINAL]
    if len(terminal) != 1:
        problems.append(f"{len(terminal)} terminal states")
    if watcher.seqs != sorted(set(watcher.seqs)):
        problems.append("watcher saw a seq twice or out of order")
    must_see = {e.seq for e in events if not e.HasField("step_progress")}
    if missed := must_see - set(watcher.seqs):
        problems.append(f"watcher missed seqs {sorted(missed)[:10]}")
    return problems


def crawled_rows(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every crawled table as sorted rows (when-computed columns left out)."""
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:

        def read() -> dict[str, list[tuple[Any, ...]]]:
            meta = sa.MetaData()
            meta.reflect(engine, only=TABLES)
            with engine.connect() as conn:
                return {name: _rows(conn, meta.tables[name]) for name in TABLES}

        return while_pg_is_full(read)
    finally:
        engine.dispose()


def _rows(conn: sa.Connection, table: sa.Table) -> list[tuple[Any, ...]]:
    columns = [c for c in table.columns if c.name not in LOCAL.get(table.name, set())]
    rows = [tuple(_plain(v) for v in row) for row in conn.execute(sa.select(*columns))]
    return sorted(rows, key=repr)


def _plain(value: Any) -> Any:
    """Values comparable across backends (SQLite returns naive datetimes)."""
    if hasattr(value, "tzinfo") and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def exports(export_dir: Path) -> tuple[dict[str, str], list[str]]:
    """The visible export files and their text, and any stray (hidden or temporary) file."""
    files: dict[str, str] = {}
    stray: list[str] = []
    if not export_dir.is_dir():
        return files, stray
    for path in sorted(export_dir.rglob("*")):
        relative = path.relative_to(export_dir)
        if not path.is_file():
            continue
        if relative.parts[0] == ".staging" or any(p.startswith(".") for p in relative.parts):
            stray.append(str(relative))
        else:
            files[str(relative)] = path.read_text()
    return files, stray
