"""The run store's hot path: a result claims the crawler's next run in its own transaction,
crawler lifecycle writes are not queued behind triggers, and what a one-step run costs in
transactions and statements (the numbers BENCHMARKS.md publishes)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from scheduler_service.runs.model import (
    AttemptResult,
    EventKind,
    Outcome,
    RunState,
    StepReport,
    StepState,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.runs.store import Claim
from tests.support.runs import DAY, T0, TTL, new_run, running


@pytest.fixture
async def store(scheduler_db_url: str) -> AsyncIterator[SqlRunStore]:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy())
    yield store
    await store.close()


async def test_a_result_claims_the_next_run_in_its_transaction(store: SqlRunStore) -> None:
    ref = await running(store, "w1")
    waiting = await store.create_run(new_run("octo/two"), T0, DAY)

    done = await store.finish_attempt(
        ref, "w1", AttemptResult(Outcome.SUCCEEDED, output={}), T0, Claim("w1", TTL)
    )

    assert done.run is not None and done.run.state is RunState.SUCCEEDED
    assert done.claimed is not None and done.claimed.id == waiting.run.id
    assert (done.claimed.state, done.claimed.worker_id) == (RunState.RUNNING, "w1")
    assert [(e.run_id, e.data["state"]) for e in done.events] == [
        (ref.run_id, "succeeded"),
        (waiting.run.id, "running"),
    ]
    stored = await store.get_run(waiting.run.id)
    assert (stored.state, stored.last_seq) == (RunState.RUNNING, 2)
    assert [e.seq for e in await store.events_after(waiting.run.id, 0)] == [1, 2]


async def test_a_result_with_nothing_pending_claims_nothing(store: SqlRunStore) -> None:
    ref = await running(store, "w1")
    done = await store.finish_attempt(
        ref, "w1", AttemptResult(Outcome.SUCCEEDED, output={}), T0, Claim("w1", TTL)
    )
    assert done.claimed is None and done.run is not None
    assert done.run.state is RunState.SUCCEEDED


@pytest.mark.parametrize("scheduler_db_url", ["sqlite"], indirect=True)
async def test_lifecycle_writes_pass_triggers_queued_for_the_writer(store: SqlRunStore) -> None:
    ref = await running(store, "w1")
    gate, finished = threading.Event(), list[str]()
    # Hold the one SQLite writer thread while a flood of triggers and one report queue up.
    blocker = store.threads.write_pool.submit(gate.wait)
    triggers = [
        asyncio.ensure_future(
            _named(store.create_run(new_run(f"octo/r{i}"), T0, DAY), "t", finished)
        )
        for i in range(20)
    ]
    report = StepReport(EventKind.STEP_STARTED, "fetch", total=1)
    step = asyncio.ensure_future(_named(store.record_step(ref, "w1", report, T0), "step", finished))
    await _until(lambda: store.threads.write_pool._queue.qsize() == 21)

    gate.set()
    await asyncio.gather(*triggers, step)
    blocker.result()

    assert finished[0] == "step" and finished.count("t") == 20


async def _named(call: Any, name: str, finished: list[str]) -> None:
    await call
    finished.append(name)


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.001)


@dataclass
class Counts:
    transactions: int = 0
    statements: int = 0
    sql: list[str] = field(default_factory=list)


@contextmanager
def counted(store: SqlRunStore) -> Iterator[Counts]:
    """Transactions (COMMITs) and statements sent by the run store, the per-transaction
    `SET LOCAL statement_timeout` of PostgreSQL excluded (it is a setting, not the run's work)."""
    counts, engine = Counts(), store.threads.writer

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if not sql.startswith(("SET LOCAL", "BEGIN")):
            counts.statements += 1
            counts.sql.append(sql.split()[0] + " " + sql.split()[2][:40])

    def commit(_conn: Any) -> None:
        counts.transactions += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


async def test_a_one_step_run_costs_four_transactions(store: SqlRunStore) -> None:
    """Paced (nothing else in flight): trigger + dispatch, step started, step finished,
    result + claim of the next (none here)."""
    claim = Claim("w1", TTL)
    with counted(store) as counts:
        created = await store.create_run(new_run("octo/noop"), T0, DAY, claim)
        assert created.claimed is not None
        ref = created.claimed.ref
        started = StepReport(EventKind.STEP_STARTED, "noop", total=1)
        await store.record_step(ref, "w1", started, T0)
        ended = StepReport(EventKind.STEP_FINISHED, "noop", state=StepState.SUCCEEDED, output={})
        await store.record_step(ref, "w1", ended, T0)
        await store.finish_attempt(
            ref, "w1", AttemptResult(Outcome.SUCCEEDED, output={}), T0, claim
        )
    print(f"\none-step run: {counts.transactions} transactions, {counts.statements} statements")
    print("\n".join(counts.sql))
    assert counts.transactions == 4
    assert counts.statements <= 19
