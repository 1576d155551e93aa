"""The `Orchestrator` driven directly (a manual clock, worker connections without streams) over a
real run store, on SQLite and PostgreSQL.

A TriggerRun whose caller goes away after its transaction claimed the run for a crawler still hands
the run to that crawler (it is not left RUNNING on a crawler that never got it, to be retried only
when its lease expires, using up an attempt). A cancel pushed to a crawler whose stream then broke
is pushed again once it re-attaches the run (not only forced after the cancel grace).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from common.clock import ManualClock
from common.jobs import CrawlSpec
from scheduler_service.orchestration.dispatch import WorkerConn
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.orchestration.tunables import Tunables
from scheduler_service.runs.model import Run, RunQuery, RunState
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.runs.store import Created, StopKind, StopRequest
from scheduler_service.runs.trigger import TriggerCommand


class CallerGoneAfterCommit(SqlRunStore):
    """The trigger's transaction commits, then its caller is cancelled before it resumes."""

    committed: asyncio.Event
    resume: asyncio.Event

    async def create_run(self, *args: Any, **kwargs: Any) -> Created:
        created = await super().create_run(*args, **kwargs)
        self.committed.set()
        await self.resume.wait()  # the RPC is cancelled here
        return created


@pytest.fixture
async def run_store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    """A plain run store."""
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy())
    yield store
    await store.close()


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[CallerGoneAfterCommit]:
    store = CallerGoneAfterCommit.open(scheduler_db_url, RetryPolicy())
    store.committed, store.resume = asyncio.Event(), asyncio.Event()
    yield store
    await store.close()


async def test_a_cancelled_trigger_still_assigns_the_run_it_claimed(
    store: CallerGoneAfterCommit,
) -> None:
    clock = ManualClock()
    orchestrator = Orchestrator(store, clock, Tunables(lease_ttl=timedelta(seconds=30)))
    conn = WorkerConn("w1", 1, "test", clock.now(), clock.now())
    orchestrator.dispatcher.add(conn)

    trigger = asyncio.create_task(orchestrator.trigger(TriggerCommand(CrawlSpec(("octo/one",)))))
    await store.committed.wait()
    trigger.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trigger
    store.resume.set()

    [run] = await store.list_runs(RunQuery())
    assert run.state is RunState.RUNNING and run.worker_id == "w1"
    # The crawler that holds the lease is told about the run (bounded: before the fix, never).
    async with asyncio.timeout(5):
        sent = await conn.outbox.get()
    assert isinstance(sent, Run) and sent.id == run.id
    assert conn.running == {run.id: run.attempt}


def _sent(conn: WorkerConn) -> list[object]:
    items: list[object] = []
    while not conn.outbox.empty():
        items.append(conn.outbox.get_nowait())
    return items


async def test_a_cancel_lost_with_the_stream_is_pushed_again(run_store: SqlRunStore) -> None:
    clock = ManualClock()
    orchestrator = Orchestrator(run_store, clock, Tunables())
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


async def test_expired_leases_say_whether_the_crawler_disconnected_or_went_silent(
    run_store: SqlRunStore,
) -> None:
    """Issue 12: a crawler still connected but silent (e.g. behind a hung database) loses its
    lease; one whose stream broke and that did not come back 'disconnected'. Neither 'restarted'."""
    clock = ManualClock()
    tunables = Tunables(lease_ttl=timedelta(seconds=30), reconnect_grace=timedelta(seconds=5))
    orchestrator = Orchestrator(run_store, clock, tunables)
    silent = WorkerConn("silent", 1, "test", clock.now(), clock.now())
    gone = WorkerConn("gone", 1, "test", clock.now(), clock.now())
    for conn in (silent, gone):
        await orchestrator.worker_connected(conn, [])
    one, _ = await orchestrator.trigger(TriggerCommand(CrawlSpec(("octo/one",))))
    two, _ = await orchestrator.trigger(TriggerCommand(CrawlSpec(("octo/two",))))
    await orchestrator.worker_disconnected(gone)
    clock.advance(timedelta(seconds=31))
    await orchestrator.sweep()
    messages = []
    for run_id in (one.id, two.id):
        run = await run_store.get_run(run_id)
        assert run.state is RunState.PENDING and run.error is not None
        messages.append(run.error.message)
    messages.sort()
    assert messages == [
        "crawler gone disconnected",
        "lease expired: no heartbeat from crawler silent renewed it for 30s",
    ]


async def test_a_run_claimed_while_its_crawler_was_away_is_reattached_on_return(
    run_store: SqlRunStore,
) -> None:
    """Issue 15: the claim commits after the crawler's stream broke; when it reconnects the run is
    re-attached and sent (the same attempt), not retried as lost."""
    clock = ManualClock()
    orchestrator = Orchestrator(run_store, clock, Tunables())
    first = WorkerConn("w1", 1, "test", clock.now(), clock.now())
    await orchestrator.worker_connected(first, [])
    with orchestrator.dispatcher.reserve() as reserved:
        assert reserved is first
        await orchestrator.worker_disconnected(first)
        await orchestrator.trigger(TriggerCommand(CrawlSpec(("octo/one",))))
        claimed = (await run_store.claim("w1", clock.now(), timedelta(seconds=30))).run
        assert claimed is not None
        orchestrator.dispatcher.assign(reserved, claimed)

    second = WorkerConn("w1", 1, "test", clock.now(), clock.now())
    await orchestrator.worker_connected(second, [])
    [sent] = [item for item in _sent(second) if isinstance(item, Run)]
    assert sent.ref == claimed.ref
    assert second.running == {claimed.id: 1}
    run = await run_store.get_run(claimed.id)
    assert run.state is RunState.RUNNING and run.attempt == 1
