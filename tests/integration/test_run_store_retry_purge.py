"""Run-store paths where two writers meet: two RetryRun calls for runs of one concurrency key (the
loser is told of the conflict, also when it only finds out from the unique index on PostgreSQL),
and a run purged between the sweep's read of its candidates and its write."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from scheduler_service.db.models import ACTIVE_SLOT
from scheduler_service.errors import RunConflict, RunNotFound
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    Outcome,
    Run,
    RunError,
    RunState,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.sql.store import SqlRunStore
from tests.support.postgres import someone_waits_for_a_lock
from tests.support.runs import T0, TTL, running

WAIT = 15.0
FATAL = AttemptResult(Outcome.FAILED, error=RunError("BROKEN", "permanent", retryable=False))


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy())
    yield store
    await store.close()


async def failed(store: SqlRunStore, worker: str = "w1") -> AttemptRef:
    """A run of `octo/one` that failed for good."""
    ref = await running(store, worker)
    await store.finish_attempt(ref, worker, FATAL, T0)
    assert (await store.get_run(ref.run_id)).state is RunState.FAILED
    return ref


async def test_two_retries_of_one_key_one_wins(store: SqlRunStore) -> None:
    first, second = await failed(store), await failed(store)
    outcomes = await asyncio.gather(
        store.retry_run(first.run_id, T0),
        store.retry_run(second.run_id, T0),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1 and len(lost) == 1
    assert isinstance(lost[0], RunConflict)
    assert won[0].run is not None and won[0].run.state is RunState.PENDING


@pytest.mark.postgres
@pytest.mark.parametrize("scheduler_db_url", ["postgresql"], indirect=True)
async def test_a_retry_losing_the_race_at_the_unique_index_is_a_conflict(
    store: SqlRunStore,
) -> None:
    first, second = await failed(store), await failed(store)
    taken, commit = threading.Event(), threading.Event()

    def retry_first_held_open() -> None:
        # What RetryRun writes, committed only once the other retry waits on the index.
        with store.transaction(T0) as tx:
            row = t.lock_run(tx, first.run_id)
            assert row is not None
            t.set_run(tx, row, state=RunState.PENDING.value, slot=ACTIVE_SLOT, finished_at=None)
            taken.set()
            commit.wait(WAIT)

    holding = asyncio.create_task(asyncio.to_thread(retry_first_held_open))
    await asyncio.to_thread(taken.wait, WAIT)
    # Its check for an active run sees none (not committed yet): the unique index decides.
    retrying = asyncio.create_task(store.retry_run(second.run_id, T0))
    async with asyncio.timeout(WAIT):
        # The waiting is in another transaction: there is no event to wait on.
        while not retrying.done() and not await asyncio.to_thread(  # noqa: ASYNC110
            someone_waits_for_a_lock, store.url
        ):
            await asyncio.sleep(0.02)
    commit.set()
    await holding
    with pytest.raises(RunConflict):
        await retrying
    assert (await store.get_run(second.run_id)).state is RunState.FAILED


class PurgedMeanwhile(SqlRunStore):
    """Between the sweep's read of its candidates and its write, `purge_first` runs."""

    purge_first: str = ""

    async def _expiry_candidates(self, now: datetime, cancel_grace: timedelta) -> list[str]:
        found: list[str] = await super()._expiry_candidates(now, cancel_grace)
        if self.purge_first in found:
            # Another scheduler process finished it and purged it, with a zero retention.
            await self.finish_attempt(
                AttemptRef(self.purge_first, 1), "w1", AttemptResult(Outcome.SUCCEEDED), now
            )
            assert await self.purge(now + timedelta(seconds=1), now) == 1
        return found


@pytest.fixture
async def purging(scheduler_db_url: str) -> AsyncIterator[PurgedMeanwhile]:
    store = PurgedMeanwhile.open(scheduler_db_url, RetryPolicy())
    yield store
    await store.close()


async def test_a_run_purged_during_the_sweep_is_skipped(purging: PurgedMeanwhile) -> None:
    gone = await running(purging, "w1", repo="octo/gone")
    kept = await running(purging, "w1", repo="octo/kept")
    purging.purge_first = gone.run_id
    late = T0 + TTL + timedelta(seconds=1)  # both leases expired

    transition = await purging.expire(late, timedelta(seconds=30))

    with pytest.raises(RunNotFound):
        await purging.get_run(gone.run_id)
    run: Run = await purging.get_run(kept.run_id)
    assert run.state is not RunState.RUNNING and run.worker_id == ""
    assert {e.run_id for e in transition.events} == {kept.run_id}
