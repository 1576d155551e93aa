"""The run store's contract, on a temporary SQLite file and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from common.db import sync_url
from scheduler_service.errors import (
    IdempotencyMismatch,
    RunConflict,
    RunFinished,
    RunNotFound,
    RunNotRetryable,
    StaleAttempt,
)
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    ConflictPolicy,
    Disposition,
    EventKind,
    Outcome,
    RunError,
    RunQuery,
    RunState,
    StepReport,
    StepState,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.runs.store import Claim, StopKind
from tests.support.runs import DAY, T0, TTL, new_run, running


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy(timedelta(seconds=5), timedelta(60)))
    yield store
    await store.close()


async def test_create_then_join_queue_and_reject(store: SqlRunStore) -> None:
    first = await store.create_run(new_run(), T0, DAY)
    assert first.disposition is Disposition.CREATED
    assert first.run.state is RunState.PENDING and first.run.attempt == 1
    assert first.transition.dispatchable

    joined = await store.create_run(new_run(), T0, DAY)
    assert (joined.disposition, joined.run.id) == (Disposition.JOINED, first.run.id)

    queued = await store.create_run(new_run(policy=ConflictPolicy.QUEUE), T0, DAY)
    assert queued.disposition is Disposition.QUEUED and queued.run.state is RunState.QUEUED
    again = await store.create_run(new_run(policy=ConflictPolicy.QUEUE), T0, DAY)
    assert (again.disposition, again.run.id) == (Disposition.JOINED, queued.run.id)

    with pytest.raises(RunConflict) as info:
        await store.create_run(new_run(policy=ConflictPolicy.REJECT), T0, DAY)
    assert info.value.active_run_id == first.run.id


async def test_other_keys_do_not_conflict(store: SqlRunStore) -> None:
    a = await store.create_run(new_run("octo/a"), T0, DAY)
    b = await store.create_run(new_run("octo/b"), T0, DAY)
    assert a.run.id != b.run.id
    assert b.disposition is Disposition.CREATED


async def test_request_id_idempotency(store: SqlRunStore) -> None:
    first = await store.create_run(new_run(request_id="r1", payload_hash="h"), T0, DAY)
    repeat = await store.create_run(new_run(request_id="r1", payload_hash="h"), T0, DAY)
    assert (repeat.disposition, repeat.run.id) == (Disposition.IDEMPOTENT, first.run.id)
    joined = await store.create_run(new_run(request_id="r2", payload_hash="h"), T0, DAY)
    assert joined.disposition is Disposition.JOINED
    repeat_joined = await store.create_run(new_run(request_id="r2", payload_hash="h"), T0, DAY)
    assert (repeat_joined.disposition, repeat_joined.run.id) == (
        Disposition.IDEMPOTENT,
        first.run.id,
    )
    with pytest.raises(IdempotencyMismatch):
        await store.create_run(new_run(request_id="r1", payload_hash="other"), T0, DAY)
    # After the TTL the request id is free again.
    later = T0 + DAY + timedelta(seconds=1)
    fresh = await store.create_run(new_run("octo/x", request_id="r1", payload_hash="z"), later, DAY)
    assert fresh.disposition is Disposition.CREATED


async def test_claim_fencing_and_success_promotes_queued(store: SqlRunStore) -> None:
    ref = await running(store)
    queued = await store.create_run(new_run(policy=ConflictPolicy.QUEUE), T0, DAY)
    assert (await store.claim("w2", T0, TTL)).run is None  # the queued run waits

    report = StepReport(EventKind.STEP_STARTED, "fetch", total=3)
    with pytest.raises(StaleAttempt):
        await store.record_step(AttemptRef(ref.run_id, 2), "w1", report, T0)
    with pytest.raises(StaleAttempt):
        await store.record_step(ref, "w2", report, T0)
    await store.record_step(ref, "w1", report, T0)
    await store.record_step(
        ref, "w1", StepReport(EventKind.STEP_PROGRESS, "fetch", 2, 3, "2/3"), T0
    )
    finished = StepReport(
        EventKind.STEP_FINISHED, "fetch", state=StepState.SUCCEEDED, output={"repos": ["octo/one"]}
    )
    await store.record_step(ref, "w1", finished, T0)
    done = await store.finish_attempt(
        ref, "w1", AttemptResult(Outcome.SUCCEEDED, output={"prs": 3}), T0
    )
    assert done.run is not None and done.run.state is RunState.SUCCEEDED
    assert done.run.output == {"prs": 3}
    assert done.run.steps[0].output == {"repos": ["octo/one"]}
    assert done.dispatchable  # the queued run was promoted
    promoted = await store.get_run(queued.run.id)
    assert promoted.state is RunState.PENDING

    log = await store.events_after(ref.run_id, 0)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert [e.kind for e in log] == [
        EventKind.STATE_CHANGED,
        EventKind.STATE_CHANGED,
        EventKind.STEP_STARTED,
        EventKind.STEP_PROGRESS,
        EventKind.STEP_FINISHED,
        EventKind.STATE_CHANGED,
    ]
    assert [e.seq for e in await store.events_after(ref.run_id, 4)] == [5, 6]
    with pytest.raises(StaleAttempt):
        await store.finish_attempt(ref, "w1", AttemptResult(Outcome.SUCCEEDED), T0)


async def test_retryable_failure_backs_off_then_fails_when_exhausted(store: SqlRunStore) -> None:
    ref = await running(store, max_attempts=2)
    error = RunError("GITHUB_UNAVAILABLE", "502s", retryable=True)
    failed = await store.finish_attempt(ref, "w1", AttemptResult(Outcome.FAILED, error=error), T0)
    run = failed.run
    assert run is not None and run.state is RunState.PENDING and run.attempt == 2
    assert run.not_before == T0 + timedelta(seconds=5)
    assert (await store.claim("w1", T0, TTL)).run is None  # still backing off
    later = T0 + timedelta(seconds=6)
    second = (await store.claim("w1", later, TTL)).run
    assert second is not None and second.ref == AttemptRef(ref.run_id, 2)
    final = await store.finish_attempt(
        second.ref, "w1", AttemptResult(Outcome.FAILED, error=error), later
    )
    assert final.run is not None and final.run.state is RunState.FAILED
    assert final.run.error == error


async def test_non_retryable_failure_and_retry_run(store: SqlRunStore) -> None:
    ref = await running(store)
    error = RunError("GITHUB_NOT_FOUND", "no such repo", retryable=False)
    failed = await store.finish_attempt(ref, "w1", AttemptResult(Outcome.FAILED, error=error), T0)
    assert failed.run is not None and failed.run.state is RunState.FAILED
    retried = await store.retry_run(ref.run_id, T0)
    assert retried.run is not None and retried.run.state is RunState.PENDING
    assert retried.run.attempt == 2 and retried.run.error is None
    with pytest.raises(RunNotRetryable):
        await store.retry_run(ref.run_id, T0)
    with pytest.raises(RunNotFound):
        await store.retry_run("run_missing", T0)


async def test_retry_run_conflicts_with_a_new_active_run(store: SqlRunStore) -> None:
    ref = await running(store)
    error = RunError("X", "x", retryable=False)
    await store.finish_attempt(ref, "w1", AttemptResult(Outcome.FAILED, error=error), T0)
    await store.create_run(new_run(), T0, DAY)
    with pytest.raises(RunConflict):
        await store.retry_run(ref.run_id, T0)


async def test_release_does_not_use_up_an_attempt(store: SqlRunStore) -> None:
    ref = await running(store, max_attempts=1)
    released = await store.finish_attempt(ref, "w1", AttemptResult(Outcome.RELEASED), T0)
    assert released.run is not None and released.run.state is RunState.PENDING
    assert released.dispatchable
    again = (await store.claim("w2", T0, TTL)).run
    assert again is not None and again.attempt == 2
    error = RunError("T", "transient", retryable=True)
    # max_attempts=1 still allows this attempt's own failure to be final, not exhausted early.
    result = await store.finish_attempt(
        again.ref, "w2", AttemptResult(Outcome.FAILED, error=error), T0
    )
    assert result.run is not None and result.run.state is RunState.FAILED


async def test_cancel_pending_queued_running_and_finished(store: SqlRunStore) -> None:
    pending = await store.create_run(new_run("octo/p"), T0, DAY)
    cancelled = await store.cancel_run(pending.run.id, "user", T0)
    assert cancelled.run is not None and cancelled.run.state is RunState.CANCELLED
    again = await store.cancel_run(pending.run.id, "user", T0)
    assert again.run is not None and again.run.state is RunState.CANCELLED

    ref = await running(store)
    queued = await store.create_run(new_run(policy=ConflictPolicy.QUEUE), T0, DAY)
    q = await store.cancel_run(queued.run.id, "", T0)
    assert q.run is not None and q.run.state is RunState.CANCELLED

    r = await store.cancel_run(ref.run_id, "stop", T0)
    assert r.run is not None and r.run.state is RunState.RUNNING and r.run.cancel_requested_at
    assert [(s.kind, s.ref, s.worker_id) for s in r.stops] == [(StopKind.CANCEL, ref, "w1")]
    assert [s.ref for s in await store.pending_cancels(["w1"])] == [ref]
    # A failure reported after the cancel request still ends as CANCELLED.
    error = RunError("T", "t", retryable=True)
    done = await store.finish_attempt(ref, "w1", AttemptResult(Outcome.FAILED, error=error), T0)
    assert done.run is not None and done.run.state is RunState.CANCELLED

    succeeded = await running(store, repo="octo/s")
    await store.finish_attempt(succeeded, "w1", AttemptResult(Outcome.SUCCEEDED), T0)
    with pytest.raises(RunFinished):
        await store.cancel_run(succeeded.run_id, "", T0)


async def test_list_runs_filters_and_pages_newest_first(store: SqlRunStore) -> None:
    ids = []
    for i in range(5):
        created = await store.create_run(
            new_run(f"octo/r{i}", labels={"team": "a" if i % 2 else "b"}),
            T0 + timedelta(seconds=i),
            DAY,
        )
        ids.append(created.run.id)
    page = await store.list_runs(RunQuery(page_size=2))
    assert [r.id for r in page] == ids[::-1][:3]
    last = page[1]
    rest = await store.list_runs(RunQuery(page_size=10, after=(last.created_at, last.id)))
    assert [r.id for r in rest] == ids[::-1][2:]
    team_a = await store.list_runs(RunQuery(labels={"team": "a"}))
    assert [r.id for r in team_a] == [ids[3], ids[1]]
    assert await store.list_runs(RunQuery(states=(RunState.RUNNING,))) == []
    window = await store.list_runs(
        RunQuery(created_after=T0 + timedelta(seconds=1), created_before=T0 + timedelta(seconds=3))
    )
    assert [r.id for r in window] == [ids[2], ids[1]]
    assert len(await store.list_runs(RunQuery(jobs=("crawl",)))) == 5
    assert await store.list_runs(RunQuery(jobs=("recalculate",))) == []


async def test_concurrent_triggers_on_one_key_never_give_two_active_runs(
    scheduler_db_url: str,
) -> None:
    # Four stores = four independent connection pools, as several scheduler processes would have.
    stores = [SqlRunStore.open(scheduler_db_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(
                stores[i % 4].create_run(new_run(policy=ConflictPolicy.QUEUE), T0, DAY)
                for i in range(100)
            )
        )
        created = [r for r in results if r.disposition is Disposition.CREATED]
        queued = [r for r in results if r.disposition is Disposition.QUEUED]
        assert len(created) == 1 and len(queued) == 1
        assert {r.run.id for r in results} == {created[0].run.id, queued[0].run.id}
        active = await stores[0].list_runs(RunQuery(states=(RunState.PENDING, RunState.RUNNING)))
        assert len(active) == 1
    finally:
        for store in stores:
            await store.close()


def test_migrated_schema_enforces_the_invariants(scheduler_db_url: str) -> None:
    """Check the migrated database, not the models: partial unique indexes keep their WHERE."""
    engine = create_engine(sync_url(scheduler_db_url))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                rows = conn.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
                ).all()
            else:
                rows = conn.execute(
                    text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'runs'")
                ).all()
            definitions = {name: (sql or "") for name, sql in rows}
            pk = inspect(conn).get_pk_constraint("run_events")["constrained_columns"]
            idem_pk = inspect(conn).get_pk_constraint("idempotency_keys")["constrained_columns"]
    finally:
        engine.dispose()
    for slot in ("active", "queued"):
        definition = definitions[f"uq_runs_{slot}_concurrency_key"]
        assert "UNIQUE" in definition.upper()
        assert f"'{slot}'" in definition and "WHERE" in definition.upper()
    assert pk == ["run_id", "seq"]
    assert idem_pk == ["request_id"]


async def test_a_trigger_can_dispatch_in_its_own_transaction(store: SqlRunStore) -> None:
    claim = Claim("w1", TTL)
    first = await store.create_run(new_run("octo/a"), T0, DAY, claim)
    assert first.claimed is not None
    assert (first.claimed.id, first.claimed.state, first.claimed.worker_id) == (
        first.run.id,
        RunState.RUNNING,
        "w1",
    )
    assert not first.transition.dispatchable  # nothing else waits
    assert [e.data["state"] for e in first.transition.events] == ["pending", "running"]
    # A join dispatches nothing; an older pending run is claimed before the new one (FIFO).
    assert (await store.create_run(new_run("octo/a"), T0, DAY, claim)).claimed is None
    backlog = await store.create_run(new_run("octo/b"), T0, DAY)
    newer = await store.create_run(new_run("octo/c"), T0 + timedelta(seconds=1), DAY, claim)
    assert newer.claimed is not None
    assert newer.claimed.id == backlog.run.id
    assert newer.transition.dispatchable


async def test_create_runs_in_one_transaction_each_trigger_failing_alone(
    store: SqlRunStore,
) -> None:
    active = await store.create_run(new_run("octo/busy"), T0, DAY)
    await store.create_run(new_run("octo/keyed", request_id="k", payload_hash="h1"), T0, DAY)

    results = await store.create_runs(
        [
            new_run("octo/a", request_id="a", payload_hash="h"),
            new_run("octo/busy", policy=ConflictPolicy.REJECT),
            new_run("octo/keyed", request_id="k", payload_hash="other"),
            new_run("octo/busy"),
            new_run("octo/a", request_id="a2", payload_hash="h"),
        ],
        T0,
        DAY,
    )

    created, rejected, mismatch, joined, joined_batch = results
    assert not isinstance(created, Exception) and created.disposition is Disposition.CREATED
    assert isinstance(rejected, RunConflict) and rejected.active_run_id == active.run.id
    assert isinstance(mismatch, IdempotencyMismatch)
    assert not isinstance(joined, Exception) and joined.run.id == active.run.id
    # A later trigger of the batch sees what an earlier one created.
    assert not isinstance(joined_batch, Exception)
    assert (joined_batch.disposition, joined_batch.run.id) == (Disposition.JOINED, created.run.id)
    # Each result carries its own events; the created run is stored with its first event.
    assert [e.run_id for e in created.transition.events] == [created.run.id]
    assert created.transition.dispatchable and not joined.transition.events
    stored = await store.get_run(created.run.id)
    assert stored.state is RunState.PENDING
    assert [e.seq for e in await store.events_after(created.run.id, 0)] == [1]
    repeat = await store.create_runs([new_run("octo/a", request_id="a", payload_hash="h")], T0, DAY)
    assert not isinstance(repeat[0], Exception)
    assert (repeat[0].disposition, repeat[0].run.id) == (Disposition.IDEMPOTENT, created.run.id)


async def test_create_runs_after_a_lost_race_creates_each_run_once(
    store: SqlRunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import IntegrityError

    from scheduler_service.runs.sql import creation

    real = creation.Keys.write
    raised: list[bool] = []

    def racing(keys: creation.Keys, tx: Any) -> None:
        # The batch's request ids lose a race once (another replica's INSERT on PostgreSQL).
        real(keys, tx)
        if not raised:
            raised.append(True)
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    monkeypatch.setattr(creation.Keys, "write", racing)
    news = [new_run("octo/a", request_id="a", payload_hash="h"), new_run("octo/b")]
    results = await store.create_runs(news, T0, DAY)

    assert raised == [True]
    assert [r.disposition for r in results if not isinstance(r, Exception)] == [
        Disposition.CREATED,
        Disposition.CREATED,
    ]
    assert len(await store.list_runs(RunQuery(page_size=10))) == 2
    repeat = await store.create_run(new_run("octo/a", request_id="a", payload_hash="h"), T0, DAY)
    assert repeat.disposition is Disposition.IDEMPOTENT
