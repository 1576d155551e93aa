"""Rarer paths of the `Orchestrator`, driven directly (a manual clock, worker connections without
streams) over a real run store on SQLite and PostgreSQL: a watcher refilling a gap left by
another scheduler process, a late result of a stale attempt, a cancel requested through another
scheduler, and the dispatcher recovering from a failed claim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from common.clock import ManualClock
from common.jobs import CrawlSpec
from scheduler_service.orchestration.dispatch import WorkerConn
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.orchestration.tunables import Tunables
from scheduler_service.runs.model import (
    AttemptResult,
    EventKind,
    Outcome,
    Run,
    RunEvent,
    RunState,
    StepReport,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.runs.store import StopKind, StopRequest
from scheduler_service.runs.trigger import TriggerCommand

#: Long enough that a watcher never re-reads the log on its own during a test: what it gets, it
#: gets from the broker (and the gap refill).
NO_POLL = Tunables(watch_poll=timedelta(hours=1), lease_ttl=timedelta(seconds=30))


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy())
    yield store
    await store.close()


def conn_for(clock: ManualClock, worker_id: str = "w1") -> WorkerConn:
    return WorkerConn(worker_id, 1, "test", clock.now(), clock.now())


def sent(conn: WorkerConn) -> list[object]:
    items: list[object] = []
    while not conn.outbox.empty():
        items.append(conn.outbox.get_nowait())
    return items


async def running_run(orchestrator: Orchestrator, conn: WorkerConn) -> Run:
    """Connect `conn` and trigger a run, which is dispatched to it."""
    await orchestrator.worker_connected(conn, [])
    await orchestrator.trigger(TriggerCommand(CrawlSpec(("octo/one",))))
    [run] = [item for item in sent(conn) if isinstance(item, Run)]
    return run


async def test_a_watcher_refills_a_gap_left_by_another_scheduler(store: SqlRunStore) -> None:
    clock = ManualClock()
    here, elsewhere = Orchestrator(store, clock, NO_POLL), Orchestrator(store, clock, NO_POLL)
    conn = conn_for(clock)
    run = await running_run(here, conn)
    watch = here.watch(run.id, run.last_seq)
    snapshot = await anext(watch)
    assert isinstance(snapshot, Run) and snapshot.last_seq == run.last_seq
    following = asyncio.ensure_future(anext(watch))

    # The crawler's stream moved to another scheduler process for one report (its broker, not
    # ours, hears of it), then back here for the next.
    await elsewhere.step_report(conn, run.ref, StepReport(EventKind.STEP_STARTED, "alpha"))
    await here.step_report(conn, run.ref, StepReport(EventKind.STEP_STARTED, "beta"))

    first = await asyncio.wait_for(following, 10)
    second = await asyncio.wait_for(anext(watch), 10)
    await watch.aclose()  # type: ignore[attr-defined]
    assert isinstance(first, RunEvent) and isinstance(second, RunEvent)
    assert [(e.seq, e.kind, e.data.get("step")) for e in (first, second)] == [
        (run.last_seq + 1, EventKind.STEP_STARTED, "alpha"),
        (run.last_seq + 2, EventKind.STEP_STARTED, "beta"),
    ]


async def test_a_late_result_of_a_stale_attempt_is_abandoned(store: SqlRunStore) -> None:
    clock = ManualClock()
    orchestrator = Orchestrator(store, clock, Tunables(lease_ttl=timedelta(seconds=30)))
    conn = conn_for(clock)
    run = await running_run(orchestrator, conn)
    # The crawler went silent: its lease expires and the run waits for another attempt.
    clock.advance(timedelta(seconds=31))
    await orchestrator.sweep()
    assert (await store.get_run(run.id)).state is not RunState.RUNNING
    sent(conn)

    await orchestrator.attempt_result(conn, run.ref, AttemptResult(Outcome.SUCCEEDED))

    stops = [item for item in sent(conn) if isinstance(item, StopRequest)]
    assert [(s.kind, s.ref, s.reason) for s in stops] == [
        (StopKind.ABANDON, run.ref, "stale attempt")
    ]
    after = await store.get_run(run.id)
    assert after.state is not RunState.SUCCEEDED and after.output is None


async def test_a_cancel_requested_through_another_scheduler_reaches_the_crawler_once(
    store: SqlRunStore,
) -> None:
    clock = ManualClock()
    here, elsewhere = Orchestrator(store, clock, Tunables()), Orchestrator(store, clock, Tunables())
    conn = conn_for(clock)
    run = await running_run(here, conn)

    cancelled = await elsewhere.cancel(run.id, "not needed", by="alice")
    assert cancelled.cancel_requested_at is not None
    assert sent(conn) == []  # the other process has no stream to this crawler
    await here.sweep()
    await here.sweep()

    stops = [item for item in sent(conn) if isinstance(item, StopRequest)]
    assert [(s.kind, s.ref) for s in stops] == [(StopKind.CANCEL, run.ref)]


async def test_the_dispatcher_survives_a_failed_claim_and_dispatches_later(
    store: SqlRunStore,
) -> None:
    clock = ManualClock()
    orchestrator = Orchestrator(store, clock, Tunables())
    claims: list[str] = []
    claim = orchestrator.dispatcher._claim

    async def failing_once(worker_id: str) -> Run | None:
        claims.append(worker_id)
        if len(claims) == 1:
            raise ConnectionError("database away")
        return await claim(worker_id)

    orchestrator.dispatcher._claim = failing_once
    loop = asyncio.create_task(orchestrator.dispatcher.run())
    try:
        run, _ = await orchestrator.trigger(TriggerCommand(CrawlSpec(("octo/one",))))
        assert run.state is RunState.PENDING  # no crawler yet
        conn = conn_for(clock)
        await orchestrator.worker_connected(conn, [])  # kicks the dispatcher: the claim fails
        async with asyncio.timeout(10):
            assigned = await conn.outbox.get()
            while not isinstance(assigned, Run):
                assigned = await conn.outbox.get()
    finally:
        orchestrator.dispatcher.close()
        await loop
    assert assigned.id == run.id and claims[:2] == ["w1", "w1"]
    assert (await store.get_run(run.id)).worker_id == "w1"
