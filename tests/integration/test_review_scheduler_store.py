"""Review findings in the run store's state machine, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from scheduler_service.retries import RetryPolicy
from scheduler_service.runs import RunState
from scheduler_service.sqla_store import SqlRunStore
from tests.integration.test_run_store import T0, TTL, running


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
