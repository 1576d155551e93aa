"""Review findings in the run store's state machine, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from scheduler_service.runs.model import AttemptResult, Outcome, RunError, RunState
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from tests.integration.test_run_store import DAY, T0, TTL, new_run, running


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy(timedelta(seconds=5), timedelta(60)))
    yield store
    await store.close()


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
