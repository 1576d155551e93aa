"""A database that hangs gives UNAVAILABLE within a bounded time, not a call stuck until the
client's deadline: a PostgreSQL table locked by someone else (the statement timeout, a session
setting given at connect), a SQLite database locked by another process (its busy timeout),
a server that accepts connections and never answers (the connect timeout); and the typed
client's UNAVAILABLE retries end with the call's deadline."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from sqlalchemy.engine import make_url

from common.client.aio import GhpulseClient
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from scheduler_service.app import SchedulerApp
from tests.support.cluster import cluster, scheduler_settings

CRAWL = spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(repositories=["octo/hang"]))
#: Far beyond the configured timeouts (1-2 s, SQLite's 10 s busy timeout), far below a hang.
BOUND = 25.0


async def _unavailable_within_bound(call: object) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    assert time.monotonic() - started < BOUND


def _lock_postgres(url: str) -> psycopg.Connection[tuple[object, ...]]:
    parsed = make_url(url)
    conn = psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database
    )
    conn.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
    return conn


def _lock_sqlite(url: str) -> sqlite3.Connection:
    conn = sqlite3.connect(make_url(url).database or "", isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


async def test_a_locked_database_is_unavailable_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> None:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    monkeypatch.setenv("GHPULSE_DB_STATEMENT_TIMEOUT", "1")
    async with cluster(tmp_path, db=scheduler_db_url, schedules_enabled=False) as c:
        postgres = scheduler_db_url.startswith("postgresql")
        holder = _lock_postgres(scheduler_db_url) if postgres else _lock_sqlite(scheduler_db_url)
        try:
            await _unavailable_within_bound(c.stub.TriggerRun(CRAWL, timeout=60))
            if postgres:  # SQLite readers see the last committed snapshot despite the lock
                request = spb.ListRunsRequest()
                await _unavailable_within_bound(c.stub.ListRuns(request, timeout=60))
        finally:
            holder.rollback()
            holder.close()
        run = (await c.stub.TriggerRun(CRAWL)).run
        assert run.id


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


async def test_a_silent_database_server_is_unavailable_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silent_server: int
) -> None:
    monkeypatch.setenv("GHPULSE_DB_CONNECT_TIMEOUT", "2")
    url = f"postgresql://postgres@127.0.0.1:{silent_server}/nothing"
    settings = scheduler_settings(tmp_path, db=url, migrate=False, schedules_enabled=False)
    async with SchedulerApp(settings) as app:
        async with grpc.aio.insecure_channel(app.address) as channel:
            from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub

            stub = SchedulerServiceStub(channel)
            await _unavailable_within_bound(stub.TriggerRun(CRAWL, timeout=60))
        # The typed client retries UNAVAILABLE, but never past the call's deadline.
        async with GhpulseClient(app.address, timeout=3) as client:
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.get_run("run_x")
            assert info.value.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            assert time.monotonic() - started < BOUND
