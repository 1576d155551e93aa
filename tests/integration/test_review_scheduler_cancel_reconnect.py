"""Review: a cancel pushed to a crawler whose stream then broke is pushed again once it
re-attaches the run (not only forced after the cancel grace)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common.clock import ManualClock
from common.jobs import CrawlSpec
from scheduler_service.orchestration.dispatch import WorkerConn
from scheduler_service.orchestration.orchestrator import Orchestrator, Tunables
from scheduler_service.runs.model import Run
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.runs.store import StopKind, StopRequest
from scheduler_service.runs.trigger import TriggerCommand


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy())
    yield store
    await store.close()


def _sent(conn: WorkerConn) -> list[object]:
    items = []
    while not conn.outbox.empty():
        items.append(conn.outbox.get_nowait())
    return items


async def test_a_cancel_lost_with_the_stream_is_pushed_again(store: SqlRunStore) -> None:
    clock = ManualClock()
    orchestrator = Orchestrator(store, clock, Tunables())
    first = WorkerConn("w1", 1, "test", clock.now(), clock.now())
    await orchestrator.worker_connected(first, [])
    run, _ = await orchestrator.trigger(TriggerCommand(CrawlSpec(("octo/one",))))
    [assigned] = [item for item in _sent(first) if isinstance(item, Run)]
    await orchestrator.cancel(run.id, "stop")
    await orchestrator.worker_disconnected(first)  # the stop was in `first`'s outbox: lost

    second = WorkerConn("w1", 1, "test", clock.now(), clock.now())
    await orchestrator.worker_connected(second, [assigned.ref])
    await orchestrator.sweep()
    stops = [item for item in _sent(second) if isinstance(item, StopRequest)]
    assert [(s.kind, s.ref) for s in stops] == [(StopKind.CANCEL, assigned.ref)]
