"""Group commit of crawlers' lifecycle writes (`group.LifecycleGroup`): results, steps, claims
and lease renewals that wait for the writer share one transaction, yet each caller gets its own
transition — or its own error — only after the commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scheduler_service.errors import StaleAttempt
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    EventKind,
    Outcome,
    RunState,
    StepReport,
    StepState,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.runs.store import Claim, Transition
from tests.support.runs import DAY, T0, TTL, new_run
from tests.support.writes import commits, until, writer_held

WORKER = "w1"
CLAIM = Claim(WORKER, TTL)
DONE = AttemptResult(Outcome.SUCCEEDED, output={})


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    # One writer thread on both backends: a held writer makes every write wait for one flush.
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy(), pool_size=1)
    yield store
    await store.close()


async def _running(store: SqlRunStore, n: int) -> list[AttemptRef]:
    refs = []
    for i in range(n):
        created = await store.create_run(new_run(f"octo/r{i}"), T0, DAY, CLAIM)
        assert created.claimed is not None
        refs.append(created.claimed.ref)
    return refs


def _steps(name: str) -> list[StepReport]:
    return [
        StepReport(EventKind.STEP_STARTED, name, total=1),
        StepReport(EventKind.STEP_FINISHED, name, state=StepState.SUCCEEDED, output={}),
    ]


async def _while_held(store: SqlRunStore, calls: list[Any]) -> list[Any]:
    """Run `calls` (coroutines of lifecycle writes) while the writer is held, then release it."""
    with writer_held(store) as gate:
        pending = asyncio.gather(*calls, return_exceptions=True)
        await until(lambda: store.lifecycle.waiting == len(calls))
        assert not pending.done()  # nobody is answered before the batch commits
        gate.set()
        return list(await pending)


async def test_finishes_that_wait_share_one_transaction_each_with_its_own_run(
    store: SqlRunStore,
) -> None:
    refs = await _running(store, 4)
    waiting = [await store.create_run(new_run(f"octo/next{i}"), T0, DAY) for i in range(2)]
    with commits(store.threads.writer) as done:
        calls = [
            store.finish_attempt(ref, WORKER, DONE, T0, CLAIM if i < 2 else None, _steps("s"))
            for i, ref in enumerate(refs)
        ]
        answers: list[Transition] = await _while_held(store, calls)
    assert len(done) == 1
    for ref, answer in zip(refs, answers, strict=True):
        assert answer.run is not None and answer.run.id == ref.run_id
        assert answer.run.state is RunState.SUCCEEDED
        assert answer.run.steps[0].state is StepState.SUCCEEDED
        # Its own events only: the run's, and those of the run it claimed.
        claimed = {answer.claimed.id} if answer.claimed is not None else set()
        assert {event.run_id for event in answer.events} == {ref.run_id, *claimed}
    claims = {answer.claimed.id for answer in answers if answer.claimed is not None}
    assert claims == {created.run.id for created in waiting}
    for ref in refs:
        seqs = [event.seq for event in await store.events_after(ref.run_id, 0)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert (await store.get_run(ref.run_id)).state is RunState.SUCCEEDED


async def test_a_stale_report_in_a_batch_fails_alone(store: SqlRunStore) -> None:
    refs = await _running(store, 3)
    stale = AttemptRef(refs[0].run_id, refs[0].attempt + 1)
    calls = [
        store.record_steps(refs[0], WORKER, _steps("a"), T0),
        store.finish_attempt(stale, WORKER, DONE, T0),
        store.finish_attempt(refs[1], WORKER, DONE, T0, CLAIM),
        store.renew_leases(WORKER, [refs[2]], T0, TTL),
    ]
    steps, refused, finished, renewed = await _while_held(store, calls)
    assert isinstance(refused, StaleAttempt)
    assert [event.kind for event in steps.events] == [
        EventKind.STEP_STARTED,
        EventKind.STEP_FINISHED,
    ]
    assert finished.run.state is RunState.SUCCEEDED and finished.claimed is None
    assert renewed == [refs[2]]
    assert (await store.get_run(refs[0].run_id)).state is RunState.RUNNING
    assert (await store.get_run(refs[0].run_id)).steps[0].state is StepState.SUCCEEDED
