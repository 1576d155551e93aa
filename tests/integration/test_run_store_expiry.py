"""The run store's contract over time, on SQLite and PostgreSQL: leases that expire, are renewed or
shortened; crawlers that come back (reattach); deadlines; retention (purge)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from scheduler_service.errors import RunNotFound, StaleAttempt
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    EventKind,
    LeaseLosses,
    Outcome,
    RunError,
    RunState,
    StepReport,
    StepState,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.runs.store import StopKind, Transition
from tests.support.runs import DAY, T0, TTL, new_run, running


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy(timedelta(seconds=5), timedelta(60)))
    yield store
    await store.close()


async def test_expired_lease_retries_and_stale_reports_are_refused(store: SqlRunStore) -> None:
    ref = await running(store)
    await store.record_step(ref, "w1", StepReport(EventKind.STEP_STARTED, "fetch"), T0)
    later = T0 + TTL + timedelta(seconds=1)
    expired = await store.expire(later, timedelta(seconds=30))
    assert [(s.kind, s.ref) for s in expired.stops] == [(StopKind.ABANDON, ref)]
    run = await store.get_run(ref.run_id)
    assert run.state is RunState.PENDING and run.attempt == 2
    assert run.error is not None and run.error.code == "WORKER_LOST"
    assert run.steps[0].state is StepState.FAILED
    with pytest.raises(StaleAttempt):
        await store.record_step(ref, "w1", StepReport(EventKind.STEP_PROGRESS, "fetch"), later)


async def test_renewed_leases_do_not_expire(store: SqlRunStore) -> None:
    ref = await running(store)
    renewed = await store.renew_leases("w1", [ref, AttemptRef("run_x", 1)], T0 + TTL / 2, TTL)
    assert renewed == [ref]
    assert (await store.expire(T0 + TTL + timedelta(seconds=1), TTL)).events == []
    assert await store.renew_leases("w2", [ref], T0, TTL) == []


async def test_reattach_keeps_held_runs_and_retries_lost_ones(store: SqlRunStore) -> None:
    kept = await running(store, repo="octo/kept")
    lost = await running(store, repo="octo/lost")
    result = await store.reattach("w1", [kept, AttemptRef("run_gone", 1)], T0, TTL)
    assert result.reattached == [kept]
    assert result.abandoned == [AttemptRef("run_gone", 1)]
    assert (await store.get_run(kept.run_id)).state is RunState.RUNNING
    lost_run = await store.get_run(lost.run_id)
    assert lost_run.state is RunState.PENDING and lost_run.attempt == 2


async def test_shortened_leases_expire_after_the_grace(store: SqlRunStore) -> None:
    ref = await running(store)
    await store.shorten_leases("w1", T0 + timedelta(seconds=2))
    assert (await store.expire(T0 + timedelta(seconds=1), TTL)).events == []
    assert (await store.expire(T0 + timedelta(seconds=3), TTL)).events
    assert (await store.get_run(ref.run_id)).attempt == 2


async def test_deadline_and_forced_cancel(store: SqlRunStore) -> None:
    ref = await running(store)
    late_deadline = T0 + timedelta(seconds=10)
    late = await store.create_run(new_run("octo/late", deadline_at=late_deadline), T0, DAY)
    await store.cancel_run(ref.run_id, "", T0)
    result = await store.expire(T0 + timedelta(seconds=11), timedelta(seconds=5))
    late_run = await store.get_run(late.run.id)
    assert late_run.state is RunState.FAILED
    assert late_run.error is not None and late_run.error.code == "DEADLINE_EXCEEDED"
    assert (await store.get_run(ref.run_id)).state is RunState.CANCELLED
    assert [s.ref for s in result.stops] == [ref]


async def test_purge_removes_old_finished_runs_only(store: SqlRunStore) -> None:
    old = await running(store, repo="octo/old")
    await store.finish_attempt(old, "w1", AttemptResult(Outcome.SUCCEEDED), T0)
    active = await store.create_run(new_run("octo/active"), T0, DAY)
    assert await store.purge(T0 + timedelta(days=31), T0 + timedelta(days=31)) == 1
    with pytest.raises(RunNotFound):
        await store.get_run(old.run_id)
    assert (await store.get_run(active.run.id)).state is RunState.PENDING


async def test_a_cancelled_run_lost_by_a_restarted_crawler_ends_cancelled(
    store: SqlRunStore,
) -> None:
    ref = await running(store)
    await store.cancel_run(ref.run_id, "stop", T0)
    # The crawler restarted and no longer has the run: the cancellation must not be forgotten
    # (retrying would run a cancelled crawl again).
    result = await store.reattach("w1", [], T0, TTL)
    run = await store.get_run(ref.run_id)
    assert run.state is RunState.CANCELLED
    assert result.transition.events[-1].data["state"] == RunState.CANCELLED.value
    assert (await store.claim("w2", T0, TTL)).run is None


async def test_retry_run_of_a_run_past_its_deadline_can_run_again(store: SqlRunStore) -> None:
    ref = await running(store, deadline_at=T0 + timedelta(seconds=10))
    late = T0 + timedelta(seconds=11)
    await store.expire(late, timedelta(seconds=5))
    failed = await store.get_run(ref.run_id)
    assert failed.error is not None and failed.error.code == "DEADLINE_EXCEEDED"

    retried = await store.retry_run(ref.run_id, late)
    assert retried.run is not None and retried.run.state is RunState.PENDING
    # A fresh deadline as long as the first one: dispatchable, and not failed again at once.
    assert retried.run.deadline_at == late + timedelta(seconds=10)
    claimed = await store.claim("w2", late, TTL)
    assert claimed.run is not None and claimed.run.id == ref.run_id


async def test_retry_run_without_deadline_keeps_none(store: SqlRunStore) -> None:
    ref = await running(store)
    error = RunError("X", "x", retryable=False)
    await store.finish_attempt(ref, "w1", AttemptResult(Outcome.FAILED, error=error), T0)
    retried = await store.retry_run(ref.run_id, T0 + DAY)
    assert retried.run is not None and retried.run.deadline_at is None
    assert (await store.create_run(new_run("octo/other"), T0, DAY)).run.deadline_at is None


async def test_an_idempotent_repeat_after_its_run_was_purged_creates_a_new_run(
    store: SqlRunStore,
) -> None:
    # Retention shorter than the idempotency TTL: the key outlives its run.
    first = await store.create_run(new_run(request_id="r1", payload_hash="h"), T0, DAY)
    await store.cancel_run(first.run.id, "", T0)
    later = T0 + timedelta(hours=2)
    assert await store.purge(T0 + timedelta(hours=1), later) == 1
    again = await store.create_run(new_run(request_id="r1", payload_hash="h"), later, DAY)
    assert again.run.id != first.run.id and again.run.state is RunState.PENDING


def _reason(transition: Transition, run_id: str) -> str:
    changes = [
        e for e in transition.events if e.run_id == run_id and e.kind is EventKind.STATE_CHANGED
    ]
    return str(changes[-1].data["reason"])


async def test_each_retry_says_what_happened(store: SqlRunStore) -> None:
    """Issue 12: a lease lost to a silent crawler (e.g. behind a hung database), a crawler that
    disconnected, and one that came back without the attempt, each retried with its own reason."""
    silent = await running(store, repo="octo/silent")
    gone = await running(store, "w2", repo="octo/gone")
    lost = await running(store, "w3", repo="octo/lost")
    result = await store.reattach("w3", [], T0, TTL)
    reattached = "crawler w3 reconnected without this attempt"
    assert _reason(result.transition, lost.run_id) == reattached
    run = await store.get_run(lost.run_id)
    assert run.attempt == 2 and run.error == RunError("WORKER_LOST", reattached, True)
    losses = LeaseLosses(TTL, frozenset({"w2"}))
    expired = await store.expire(T0 + TTL + timedelta(seconds=1), TTL, losses)
    quiet = f"lease expired: no heartbeat from crawler w1 renewed it for {TTL.seconds}s"
    assert _reason(expired, silent.run_id) == quiet
    assert (await store.get_run(silent.run_id)).error == RunError("WORKER_LOST", quiet, True)
    assert _reason(expired, gone.run_id) == "crawler w2 disconnected"
    assert (await store.get_run(gone.run_id)).error == RunError(
        "WORKER_LOST", "crawler w2 disconnected", True
    )
    # A TTL unknown to the caller: still a lease expiry, without the made-up duration.
    assert (
        LeaseLosses().error("w1").message
        == "lease expired: no heartbeat from crawler w1 renewed it"
    )


async def test_a_cancelled_run_lost_on_reconnect_says_so(store: SqlRunStore) -> None:
    ref = await running(store)
    await store.cancel_run(ref.run_id, "stop", T0)
    result = await store.reattach("w1", [], T0, TTL)
    assert _reason(result.transition, ref.run_id) == "cancelled (crawler w1 reconnected without it)"
