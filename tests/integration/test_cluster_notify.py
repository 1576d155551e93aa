"""Two scheduler replicas on one PostgreSQL database, real gRPC servers and a real crawler: runs and
events cross between them through LISTEN/NOTIFY. The sweep (and so the watchers' safety poll) is
an hour apart here: only a notice, or the listener's resync, can explain what happens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from scheduler_service.app import SchedulerApp
from scheduler_service.cluster.listener import conninfo
from tests.support import postgres
from tests.support.cluster import Cluster, cluster, scheduler_settings

HOUR = 3600.0
PROGRESS = "step_progress"


@pytest.fixture
def pg_url(scheduler_pg_template: str) -> Iterator[str]:
    with postgres.clone(scheduler_pg_template) as url:
        yield url


@pytest.fixture
async def b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> AsyncIterator[Cluster]:
    """Replica B with the only crawler."""
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path, db=pg_url, sweep_interval=HOUR) as running:
        await running.add_crawler("crawler-on-b")
        yield running


@pytest.fixture
async def a(tmp_path: Path, pg_url: str, b: Cluster) -> AsyncIterator[SchedulerApp]:
    """Replica A, without crawlers."""
    app = SchedulerApp(scheduler_settings(tmp_path, db=pg_url, migrate=False, sweep_interval=HOUR))
    await app.start()
    yield app
    await app.stop()


def _stored_events(url: str, run_id: str) -> list[tuple[int, str]]:
    with psycopg.connect(conninfo(url)) as conn:
        rows = conn.execute(
            "SELECT seq, kind FROM run_events WHERE run_id = %s ORDER BY seq", (run_id,)
        ).fetchall()
    return [(int(seq), str(kind)) for seq, kind in rows]


def _assert_complete(messages: list[spb.WatchRunResponse], url: str, run_id: str) -> None:
    """In order, ending with the terminal event, every event but coalesced progress delivered."""
    assert messages[0].HasField("snapshot")
    seqs = [m.event.seq for m in messages[1:]]
    assert seqs == sorted(set(seqs))
    assert messages[-1].event.state_changed.state == runs_pb2.RUN_STATE_SUCCEEDED
    stored = _stored_events(url, run_id)
    assert seqs[-1] == stored[-1][0]
    delivered = set(seqs)
    first = seqs[0]
    must = {seq for seq, kind in stored if kind != "step_progress" and seq >= first}
    assert must <= delivered


async def _watch(address: str, run_id: str) -> list[spb.WatchRunResponse]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = SchedulerServiceStub(channel).WatchRun(spb.WatchRunRequest(run_id=run_id))
        return [message async for message in call]


async def _trigger(address: str, repository: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        request = spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(repositories=[repository]))
        return (await SchedulerServiceStub(channel).TriggerRun(request)).run.id


async def test_a_trigger_on_a_is_claimed_by_a_crawler_on_b_and_watched_on_a(
    a: SchedulerApp, b: Cluster, pg_url: str
) -> None:
    assert a.listener is not None and a.listener.healthy
    run_id = await _trigger(a.address, "test/plain")
    messages = await _watch(a.address, run_id)
    _assert_complete(messages, pg_url, run_id)
    with psycopg.connect(conninfo(pg_url)) as conn:
        workers = conn.execute(
            "SELECT data->>'worker' FROM run_events WHERE run_id = %s AND data->>'state' = %s",
            (run_id, "running"),
        ).fetchall()
    assert workers == [("crawler-on-b",)]


async def test_a_watcher_on_a_catches_up_after_its_listener_is_cut(
    a: SchedulerApp, b: Cluster, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = a.listener
    assert listener is not None
    run_id = await _trigger(a.address, "test/gated")
    await b.wait_for_step(run_id, "beta")
    watching = asyncio.create_task(_watch(a.address, run_id))
    while not a.orchestrator.broker.watched(run_id):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    # Hold A's reconnection until the run has finished on B: its notices are all missed.
    allowed = asyncio.Event()
    listen = listener._listen

    async def held() -> None:
        await allowed.wait()
        await listen()

    monkeypatch.setattr(listener, "_listen", held)
    with psycopg.connect(conninfo(pg_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
    while listener.healthy:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    b.open_gate(run_id)
    finished = await b.wait_for_state(run_id, runs_pb2.RUN_STATE_SUCCEEDED)
    assert finished.state == runs_pb2.RUN_STATE_SUCCEEDED
    assert not watching.done()
    allowed.set()
    messages = await asyncio.wait_for(watching, 30)
    assert listener.connections == 2
    _assert_complete(messages, pg_url, run_id)


async def test_a_cancel_on_a_reaches_the_crawler_on_b(a: SchedulerApp, b: Cluster) -> None:
    run_id = await _trigger(a.address, "test/gated")
    await b.wait_for_step(run_id, "beta")
    async with grpc.aio.insecure_channel(a.address) as channel:
        stub_a = SchedulerServiceStub(channel)
        await stub_a.CancelRun(spb.CancelRunRequest(run_id=run_id, reason="test"))
        messages = [m async for m in stub_a.WatchRun(spb.WatchRunRequest(run_id=run_id))]
    assert messages[-1].event.state_changed.state == runs_pb2.RUN_STATE_CANCELLED
