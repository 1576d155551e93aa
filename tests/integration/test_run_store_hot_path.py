"""The run store's hot path: a result claims the crawler's next run in its own transaction,
crawler lifecycle writes are not queued behind triggers, and what a one-step run costs in
transactions and statements (the numbers BENCHMARKS.md publishes)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
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
from tests.support.cluster import TERMINAL, cluster
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
    gate, holding, finished = threading.Event(), threading.Event(), list[str]()

    def hold() -> None:
        holding.set()
        gate.wait()

    # Hold the one SQLite writer thread while a flood of triggers and one report queue up.
    blocker = store.threads.write_pool.submit(hold)
    await asyncio.to_thread(holding.wait)
    triggers = [
        asyncio.ensure_future(
            _named(store.create_run(new_run(f"octo/r{i}"), T0, DAY), "t", finished)
        )
        for i in range(20)
    ]
    report = StepReport(EventKind.STEP_STARTED, "fetch", total=1)
    step = asyncio.ensure_future(_named(store.record_step(ref, "w1", report, T0), "step", finished))
    try:
        # Group commit: the 20 triggers wait for one flush, queued like a single write.
        queued = 2 if store.group is not None else 21
        await _until(lambda: store.threads.write_pool._queue.qsize() == queued)
    finally:
        gate.set()
    await asyncio.gather(*triggers, step)
    blocker.result()

    assert finished[0] == "step" and finished.count("t") == 20


async def _named(call: Any, name: str, finished: list[str]) -> None:
    await call
    finished.append(name)


async def _until(condition: Any) -> None:
    while not condition():  # noqa: ASYNC110 (a condition of another thread's queue)
        await asyncio.sleep(0.001)


@dataclass
class Counts:
    transactions: int = 0
    statements: int = 0
    #: PostgreSQL's cluster wake-ups (`pg_notify`, at most one per write transaction), counted
    #: apart from the run's own statements; `alone`: those sent in a statement of their own (a
    #: transaction that inserts events sends its NOTIFY in the same statement).
    notifies: int = 0
    alone: int = 0
    open: dict[int, list[str]] = field(default_factory=dict)
    log: list[list[str]] = field(default_factory=list)


@contextmanager
def counted(engine: Engine) -> Iterator[Counts]:
    """Committed transactions that wrote on `engine`, and their statements (a claim or a read
    that found nothing is not counted; nor is PostgreSQL's per-transaction `SET LOCAL
    statement_timeout`, a setting rather than the run's work, nor SQLite's BEGIN)."""
    counts = Counts()
    counting = True

    def begin(conn: Any) -> None:
        if counting:
            counts.open[id(conn)] = []

    def statement(conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if id(conn) not in counts.open:
            return
        counts.notifies += "pg_notify(" in sql
        if sql.lstrip().startswith("SELECT pg_notify"):
            counts.alone += 1
        elif not sql.startswith(("SET LOCAL", "BEGIN")):
            # The events' INSERT with the NOTIFY (`WITH appended AS (INSERT …`) is an INSERT.
            words = sql.split()
            counts.open[id(conn)].append(" ".join(words[3 if words[0] == "WITH" else 0 :][:3]))

    def commit(conn: Any) -> None:
        done = counts.open.pop(id(conn), [])
        if counting and any(sql.startswith(("INSERT", "UPDATE", "DELETE")) for sql in done):
            counts.transactions += 1
            counts.statements += len(done)
            counts.log.append(done)

    def rollback(conn: Any) -> None:
        counts.open.pop(id(conn), None)

    hooks: dict[str, Callable[..., Any]] = {
        "begin": begin,
        "before_cursor_execute": statement,
        "commit": commit,
    }
    hooks["rollback"] = rollback
    for name, hook in hooks.items():
        event.listen(engine, name, hook)
    try:
        yield counts
    finally:
        # Not removed: a database thread may be running the listeners (removing them would
        # mutate the list it iterates); they stop counting and go with the engine.
        counting = False


async def test_a_one_step_run_costs_two_transactions_in_the_store(store: SqlRunStore) -> None:
    """As the orchestrator writes a paced one-step run whose reports come within the step batch
    window: trigger + dispatch; step started + step finished + result + claim of the next."""
    claim = Claim("w1", TTL)
    with counted(store.threads.writer) as counts:
        created = await store.create_run(new_run("octo/noop"), T0, DAY, claim)
        assert created.claimed is not None
        ref = created.claimed.ref
        reports = [
            StepReport(EventKind.STEP_STARTED, "noop", total=1),
            StepReport(EventKind.STEP_FINISHED, "noop", state=StepState.SUCCEEDED, output={}),
        ]
        result = AttemptResult(Outcome.SUCCEEDED, output={})
        done = await store.finish_attempt(ref, "w1", result, T0, claim, reports)
    assert done.run is not None and done.run.steps[0].state is StepState.SUCCEEDED
    assert [e.seq for e in await store.events_after(ref.run_id, 0)] == [1, 2, 3, 4, 5]
    assert (counts.transactions, counts.statements) == (2, 10)
    assert counts.notifies <= counts.transactions
    # Both transactions insert events: their NOTIFY (PostgreSQL) rides on that INSERT.
    assert counts.alone == 0


async def test_a_one_step_noop_run_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> None:
    """A real scheduler and crawler (the noop job of bench/noop_plugin.py), one run, paced."""
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    # No periodic writes during the run: heartbeats and sweeps far apart.
    slow_heartbeats = {"heartbeat_interval": 30.0, "lease_ttl": 60.0, "sweep_interval": 60.0}
    async with cluster(tmp_path, db=scheduler_db_url, **slow_heartbeats) as c:
        await c.add_crawler(plugins="bench.noop_plugin:register")
        store = c.scheduler.orchestrator.store
        assert isinstance(store, SqlRunStore)
        with counted(store.threads.writer) as counts:
            request = spb.TriggerRunRequest(plugin=runs_pb2.PluginJob(kind="noop"))
            run = (await c.stub.TriggerRun(request)).run
            done = await c.wait_for_state(run.id, *TERMINAL)
    assert done.state == runs_pb2.RUN_STATE_SUCCEEDED
    assert (counts.transactions, counts.statements) == (2, 10), counts.log
    assert counts.notifies <= counts.transactions
    assert counts.alone == 0, counts.log
