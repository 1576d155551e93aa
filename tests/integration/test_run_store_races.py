"""Run-store transactions racing each other on PostgreSQL (READ COMMITTED), one held open at the
point that matters while the other runs: a QUEUE trigger racing the finish of its key's active run
must not leave a queued run with no active run to promote it (it would wait for its deadline); a
reattach racing the sweep must not revive a failed run; a finish must not promote a queued run
being cancelled."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from scheduler_service.runs.model import (
    AttemptResult,
    ConflictPolicy,
    LeaseLosses,
    Outcome,
    RunState,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.sql.store import SqlRunStore
from tests.support.postgres import someone_waits_for_a_lock
from tests.support.runs import DAY, T0, new_run, running

WAIT = 15.0


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy(timedelta(seconds=5), timedelta(60)))
    yield store
    await store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("scheduler_db_url", ["postgresql"], indirect=True)
async def test_queue_trigger_racing_the_active_runs_finish(store: SqlRunStore) -> None:
    ref = await running(store)
    finished, commit = threading.Event(), threading.Event()

    def finish_active() -> None:
        with store.transaction(T0) as tx:
            row = t.lock_owned(tx, ref, "w1")
            t.apply_result(tx, row, AttemptResult(Outcome.SUCCEEDED))
            finished.set()
            commit.wait(WAIT)

    finishing = asyncio.create_task(asyncio.to_thread(finish_active))
    await asyncio.to_thread(finished.wait, WAIT)
    queueing = asyncio.create_task(store.create_run(new_run(policy=ConflictPolicy.QUEUE), T0, DAY))
    async with asyncio.timeout(WAIT):
        # The trigger either completes or waits for the finishing transaction's lock: the
        # condition is in another transaction, there is no event to wait on.
        while not queueing.done() and not await asyncio.to_thread(  # noqa: ASYNC110
            someone_waits_for_a_lock, store.url
        ):
            await asyncio.sleep(0.02)
    commit.set()
    await finishing
    created = await queueing

    run = await store.get_run(created.run.id)
    # Either it became the active run itself, or it was queued and promoted: never orphaned.
    assert run.state is RunState.PENDING, run.state


@pytest.mark.postgres
@pytest.mark.parametrize("scheduler_db_url", ["postgresql"], indirect=True)
async def test_reattach_racing_the_sweep_failing_the_run(store: SqlRunStore) -> None:
    ref = await running(store, deadline_at=T0 + timedelta(seconds=10))
    expired, commit = threading.Event(), threading.Event()
    late = T0 + timedelta(seconds=11)

    def fail_past_deadline() -> None:
        with store.transaction(late) as tx:
            row = t.lock_run(tx, ref.run_id)
            assert row is not None
            t.expire_one(tx, row, timedelta(seconds=30), LeaseLosses(timedelta(seconds=30)))
            expired.set()
            commit.wait(WAIT)

    failing = asyncio.create_task(asyncio.to_thread(fail_past_deadline))
    await asyncio.to_thread(expired.wait, WAIT)
    # The crawler restarted without the run, while the sweep fails it past its deadline.
    reattaching = asyncio.create_task(store.reattach("w1", [], late, timedelta(seconds=30)))
    async with asyncio.timeout(WAIT):
        while not reattaching.done() and not await asyncio.to_thread(  # noqa: ASYNC110
            someone_waits_for_a_lock, store.url
        ):
            await asyncio.sleep(0.02)
    commit.set()
    await failing
    result = await reattaching

    run = await store.get_run(ref.run_id)
    # A finished run stays finished: never pending again (outside its key's slot).
    assert run.state is RunState.FAILED, run.state
    assert result.transition.events == []


@pytest.mark.postgres
@pytest.mark.parametrize("scheduler_db_url", ["postgresql"], indirect=True)
async def test_finish_racing_the_cancel_of_the_queued_run(store: SqlRunStore) -> None:
    ref = await running(store)
    queued = await store.create_run(new_run(policy=ConflictPolicy.QUEUE), T0, DAY)
    cancelled, commit = threading.Event(), threading.Event()

    def cancel_queued() -> None:
        with store.transaction(T0) as tx:
            row = t.lock_run(tx, queued.run.id)
            assert row is not None
            t.finish(tx, row, RunState.CANCELLED, "user")
            cancelled.set()
            commit.wait(WAIT)

    cancelling = asyncio.create_task(asyncio.to_thread(cancel_queued))
    await asyncio.to_thread(cancelled.wait, WAIT)
    finishing = asyncio.create_task(
        store.finish_attempt(ref, "w1", AttemptResult(Outcome.SUCCEEDED), T0)
    )
    async with asyncio.timeout(WAIT):
        while not finishing.done() and not await asyncio.to_thread(  # noqa: ASYNC110
            someone_waits_for_a_lock, store.url
        ):
            await asyncio.sleep(0.02)
    commit.set()
    await cancelling
    await finishing

    # The cancelled queued run is not promoted back to life.
    assert (await store.get_run(queued.run.id)).state is RunState.CANCELLED
    assert (await store.claim("w2", T0, timedelta(seconds=30))).run is None
