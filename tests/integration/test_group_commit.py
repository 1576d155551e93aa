"""Group commit of TriggerRuns (scheduler_service/runs/sql/group.py): concurrent triggers share
transactions, yet each caller gets exactly its own outcome — its conflict, its idempotent repeat —
only after its batch committed; a failed batch answers everyone UNAVAILABLE and stores nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from common.errors import Unavailable
from scheduler_service.errors import IdempotencyMismatch, RunConflict
from scheduler_service.runs.model import ConflictPolicy, Disposition, NewRun
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.claiming import Trigger
from scheduler_service.runs.sql.group import GroupCommit
from scheduler_service.runs.sql.lanes import Lanes
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.runs.store import Created
from tests.support.runs import DAY, T0, new_run
from tests.support.writes import commits, count, until, writer_held

JOIN, QUEUE, REJECT = ConflictPolicy.JOIN, ConflictPolicy.QUEUE, ConflictPolicy.REJECT


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    # One writer thread on both backends: a held writer makes every trigger wait for one flush.
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy(), pool_size=1)
    yield store
    await store.close()


def trigger(
    key: str, policy: ConflictPolicy = JOIN, request_id: str = "", digest: str = ""
) -> NewRun:
    return new_run(
        key.replace(":", "/"),
        policy,
        concurrency_key=key,
        request_id=request_id,
        payload_hash=digest or f"{key}/{policy.value}",
    )


def mixed_triggers() -> list[tuple[str, NewRun]]:
    """Triggers whose answers depend on each other, interleaved, with what each caller expects
    (given submission order): created, joined, queued, rejected, idempotent, mismatch."""
    groups: list[list[tuple[str, NewRun]]] = [
        [("created", trigger(f"solo:{i}")) for i in range(40)],
        [("created", trigger("join:a"))] + [("joined", trigger("join:a")) for _ in range(9)],
        [("created", trigger("queue:a", QUEUE)), ("queued", trigger("queue:a", QUEUE))]
        + [("joined-queued", trigger("queue:a", QUEUE)) for _ in range(3)],
        [("created", trigger("reject:a"))] + [("rejected", trigger("reject:a", REJECT))] * 4,
        [("created", trigger("idem:a", request_id="rq-1"))]
        + [("idempotent", trigger("idem:a", request_id="rq-1")) for _ in range(5)]
        + [("mismatch", trigger("idem:a", request_id="rq-1", digest="another"))],
    ]
    mixed: list[tuple[str, NewRun]] = []
    while any(groups):
        for group in groups:
            if group:
                mixed.append(group.pop(0))
    return mixed


async def answers(store: SqlRunStore, triggers: list[NewRun]) -> list[Created | BaseException]:
    calls = [store.create_run(new, T0, DAY) for new in triggers]
    return await asyncio.gather(*calls, return_exceptions=True)


def check_own_outcomes(expected: list[str], triggers: list[NewRun], got: list[Any]) -> None:
    """Every caller got the outcome its position implies, about its own key."""
    first: dict[str, str] = {}
    queued: dict[str, str] = {}
    for kind, new, answer in zip(expected, triggers, got, strict=True):
        key = new.concurrency_key
        if kind == "rejected":
            assert isinstance(answer, RunConflict) and answer.active_run_id == first[key]
            continue
        if kind == "mismatch":
            assert isinstance(answer, IdempotencyMismatch), answer
            continue
        assert isinstance(answer, Created), answer
        assert answer.run.concurrency_key == key
        if kind == "created":
            assert answer.disposition is Disposition.CREATED and key not in first
            first[key] = answer.run.id
        elif kind == "joined":
            assert (answer.disposition, answer.run.id) == (Disposition.JOINED, first[key])
        elif kind == "queued":
            assert answer.disposition is Disposition.QUEUED and answer.run.id != first[key]
            queued[key] = answer.run.id
        elif kind == "joined-queued":
            assert (answer.disposition, answer.run.id) == (Disposition.JOINED, queued[key])
        else:
            assert (answer.disposition, answer.run.id) == (Disposition.IDEMPOTENT, first[key])


async def test_a_batch_answers_each_caller_its_own_outcome(store: SqlRunStore) -> None:
    expected, triggers = zip(*mixed_triggers(), strict=True)
    with commits(store.threads.writer) as done, writer_held(store) as gate:
        pending = asyncio.ensure_future(answers(store, list(triggers)))
        assert store.group is not None
        await until(lambda: store.group.waiting == len(triggers))  # type: ignore[union-attr]
        assert not pending.done()  # nobody is answered before the flush commits
        gate.set()
        got = await pending
    check_own_outcomes(list(expected), list(triggers), got)
    # 72 triggers, at most 50 per batch: two transactions.
    assert len(done) == 2
    assert await count(store, "runs") == 40 + 1 + 2 + 1 + 1
    assert await count(store, "run_events") == 45
    assert await count(store, "idempotency_keys") == 1


async def test_plain_triggers_of_a_batch_share_one_insert_and_keep_their_own_times(
    store: SqlRunStore,
) -> None:
    """Triggers that only create their run (no slot to claim for) are inserted by one multi-row
    INSERT, their request ids read in one statement and written in one — yet each run is stamped
    with its own trigger's time and each caller answered with its own run."""
    times = [T0 + timedelta(milliseconds=i) for i in range(20)]
    news = [trigger(f"plain:{i}", request_id=f"rq-plain-{i}") for i in range(20)]
    assert store.group is not None
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if not sql.lstrip().upper().startswith(("SELECT PG_NOTIFY", "SET LOCAL", "BEGIN")):
            statements.append(" ".join(sql.split()[:3]))

    event.listen(store.threads.writer, "before_cursor_execute", seen)
    try:
        with writer_held(store) as gate:
            calls = [store.create_run(new, at, DAY) for new, at in zip(news, times, strict=True)]
            pending = asyncio.ensure_future(asyncio.gather(*calls))
            await until(lambda: store.group.waiting == len(news))  # type: ignore[union-attr]
            gate.set()
            got = await pending
    finally:
        event.remove(store.threads.writer, "before_cursor_execute", seen)
    # The request ids read, the runs inserted, the events inserted, the request ids written.
    assert len(statements) == 4, statements
    for new, at, answer in zip(news, times, got, strict=True):
        assert answer.disposition is Disposition.CREATED
        assert answer.run.concurrency_key == new.concurrency_key
        assert answer.run.created_at == at
        stored = await store.get_run(answer.run.id)
        assert stored.created_at == at
        assert [(e.seq, e.time) for e in answer.transition.events] == [(1, at)]
    # Repeated, each request is answered with its own run.
    again = await answers(store, news)
    assert [a.run.id for a in again if isinstance(a, Created)] == [a.run.id for a in got]


async def test_a_flood_of_concurrent_callers_on_few_keys(scheduler_db_url: str) -> None:
    """No held writer: flushes run while triggers keep coming (on PostgreSQL with 8 threads,
    two batches at once), each caller answered about its own key and request."""
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy(), pool_size=8)
    try:
        triggers = [
            trigger(f"flood:{i % 7}", request_id=f"rq-{i % 50}" if i % 3 == 0 else "")
            for i in range(600)
        ]
        # A repeated request id repeats its first request, as a client's retry does.
        by_request: dict[str, NewRun] = {}
        triggers = [by_request.setdefault(n.request_id, n) if n.request_id else n for n in triggers]
        got = await answers(store, triggers)
    finally:
        await store.close()
    runs_of_key: dict[str, set[str]] = {}
    for new, answer in zip(triggers, got, strict=True):
        assert isinstance(answer, Created), answer
        assert answer.run.concurrency_key == new.concurrency_key
        runs_of_key.setdefault(new.concurrency_key, set()).add(answer.run.id)
    # One active run per key, every caller of the key joined it (nothing finishes meanwhile).
    assert all(len(ids) == 1 for ids in runs_of_key.values()) and len(runs_of_key) == 7
    created = Counter(a.disposition for a in got if isinstance(a, Created))
    assert created[Disposition.CREATED] == 7


async def test_a_failed_batch_answers_everyone_unavailable_and_stores_nothing(
    store: SqlRunStore,
) -> None:
    triggers = [trigger(f"fail:{i}", request_id=f"rq-fail-{i}") for i in range(30)]
    triggers += [trigger("fail:0", REJECT), trigger("fail:1", request_id="rq-fail-1")]
    engine = store.threads.writer

    def broken(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        # Alone, or with the transaction's NOTIFY on PostgreSQL (`WITH appended AS (INSERT …`).
        if "INSERT INTO RUN_EVENTS" in sql.upper():
            raise OperationalError(sql, {}, Exception("injected: the disk is full"))

    event.listen(engine, "before_cursor_execute", broken)
    try:
        with writer_held(store) as gate:
            pending = asyncio.ensure_future(answers(store, triggers))
            await until(lambda: store.group.waiting == len(triggers))  # type: ignore[union-attr]
            gate.set()
            got = await pending
    finally:
        event.remove(engine, "before_cursor_execute", broken)
    assert all(isinstance(answer, Unavailable) for answer in got), got
    for table in ("runs", "run_events", "idempotency_keys", "run_labels"):
        assert await count(store, table) == 0, table
    # Retried with their request ids, the triggers create their runs: nothing was half-stored.
    again = await answers(store, triggers[:30])
    assert [a.disposition for a in again if isinstance(a, Created)] == [Disposition.CREATED] * 30


async def test_closing_answers_waiting_callers_and_refuses_new_ones(store: SqlRunStore) -> None:
    assert store.group is not None
    store.group.close()
    with pytest.raises(Unavailable):
        await store.create_run(trigger("late"), T0, DAY)


async def test_closing_flushes_what_waits_and_answers_every_caller(store: SqlRunStore) -> None:
    assert store.group is not None
    with writer_held(store) as gate:
        pending = asyncio.ensure_future(answers(store, [trigger(f"close:{i}") for i in range(10)]))
        await until(lambda: store.group.waiting == 10)  # type: ignore[union-attr]
        store.group.close()
        gate.set()
    await store.close()
    got = await pending
    assert [a.disposition for a in got if isinstance(a, Created)] == [Disposition.CREATED] * 10


async def test_triggers_with_no_writer_threads_left_are_answered_unavailable(
    store: SqlRunStore,
) -> None:
    lanes = Lanes(1, "test-closed")
    lanes.shutdown()
    group = GroupCommit(store, lanes)
    with pytest.raises(Unavailable):
        await group.create(Trigger(trigger("orphan"), T0, DAY))
