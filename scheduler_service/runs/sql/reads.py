"""The run store's read queries and row conversions (synchronous SQLAlchemy), used by
`SqlRunStore` on its reader connections and inside its write transactions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    and_,
    exists,
    func,
    literal_column,
    or_,
    select,
)

from common.jobs import from_json
from scheduler_service.db.models import RunLabelRow
from scheduler_service.errors import RunNotFound
from scheduler_service.runs.model import (
    AttemptRef,
    EventKind,
    Run,
    RunError,
    RunEvent,
    RunQuery,
    RunState,
    StepState,
    StepStatus,
    Trigger,
)
from scheduler_service.runs.sql import statements as q
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.store import StopKind, StopRequest

runs, steps, events = t.runs, t.steps, t.events
labels = cast(Table, RunLabelRow.__table__)
ACTIVE_STATES = (RunState.PENDING.value, RunState.QUEUED.value, RunState.RUNNING.value)


def state_is(*states: str) -> ColumnElement[bool]:
    """`state` compared with constants written into the SQL, not bound parameters: the planner
    proves a partial index's predicate (`state = 'pending'`, migration 0004) only from constants,
    and a prepared statement's generic plan has none."""
    values: list[ColumnElement[str]] = [
        literal_column(f"'{RunState(state).value}'") for state in states
    ]
    return runs.c.state == values[0] if len(values) == 1 else runs.c.state.in_(values)


def load(conn: Connection, run_id: str) -> Run:
    """The run with its steps; raises `RunNotFound`."""
    row = q.LOAD_RUN.first(conn, {"w_id": run_id})
    if row is None:
        raise RunNotFound(run_id)
    return with_steps(conn, row)


def with_steps(conn: Connection, row: dict[str, Any]) -> Run:
    """The run of `row` (as it is in memory) with its steps read."""
    if row["started_at"] is None:
        # Never dispatched: it has no steps yet.
        return to_run(row, [])
    return to_run(row, [to_step(step) for step in q.STEPS_OF_RUN.all(conn, {"w_run": row["id"]})])


def run_of(tx: t.Tx, row: dict[str, Any]) -> Run:
    """Like `with_steps`, without reading the steps again if `tx` has them."""
    if row["id"] not in tx.steps:
        return with_steps(tx.conn, row)
    return to_run(row, [to_step(step) for step in tx.steps[row["id"]]])


def steps_of(conn: Connection, run_ids: Sequence[str]) -> dict[str, list[StepStatus]]:
    if not run_ids:
        return {}
    result = conn.execute(q.STEPS_OF, {"w_ids": list(run_ids)})
    by_run: dict[str, list[StepStatus]] = {}
    for row in result.mappings():
        by_run.setdefault(row["run_id"], []).append(to_step(dict(row)))
    return by_run


def list_statement(query: RunQuery) -> Select[Any]:
    """One page of ListRuns (and one run more, to tell whether another page follows)."""
    return (
        select(runs)
        .where(*filters(query))
        .order_by(runs.c.created_at.desc(), runs.c.id.desc())
        .limit(query.page_size + 1)
    )


def list_runs(conn: Connection, query: RunQuery) -> list[Run]:
    statement = list_statement(query)
    rows = [dict(r) for r in (conn.execute(statement)).mappings()]
    step_rows = steps_of(conn, [r["id"] for r in rows])
    return [to_run(row, step_rows.get(row["id"], [])) for row in rows]


def events_after(conn: Connection, run_id: str, after_seq: int, limit: int) -> list[RunEvent]:
    statement = (
        select(events)
        .where(events.c.run_id == run_id, events.c.seq > after_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [to_event(dict(r)) for r in (conn.execute(statement)).mappings()]


def expiry_candidates(conn: Connection, now: datetime, cancel_grace: timedelta) -> list[str]:
    return list((conn.execute(expiry_statement(now, cancel_grace))).scalars())


def expiry_statement(now: datetime, cancel_grace: timedelta) -> Select[Any]:
    """The runs past their lease, their cancel grace or their deadline."""
    # Each branch is one partial index's range (BitmapOr on PostgreSQL).
    running = state_is(RunState.RUNNING.value)
    statement = select(runs.c.id).where(
        or_(
            and_(running, runs.c.lease_expires_at < now),
            # Not a fan-out parent (no crawler): it ends with its last child.
            and_(running, runs.c.cancel_requested_at < now - cancel_grace, runs.c.worker_id != ""),
            and_(state_is(*ACTIVE_STATES), runs.c.deadline_at < now),
        )
    )
    return statement


def pending_cancels(conn: Connection, worker_ids: list[str]) -> list[StopRequest]:
    return [
        StopRequest(worker, AttemptRef(run_id, attempt), StopKind.CANCEL, "cancelled")
        for run_id, attempt, worker in conn.execute(cancels_statement(worker_ids)).all()
    ]


def cancels_statement(worker_ids: list[str]) -> Select[Any]:
    """The running runs of `worker_ids` whose cancellation was requested."""
    return select(runs.c.id, runs.c.attempt, runs.c.worker_id).where(
        state_is(RunState.RUNNING.value),
        runs.c.cancel_requested_at.is_not(None),
        runs.c.worker_id.in_(worker_ids),
    )


def active_counts_statement() -> Select[Any]:
    """Active runs by job and state (from their partial index: no scan of finished runs)."""
    return counts_statement(state_is(*ACTIVE_STATES))


def counts_statement(where: Any) -> Select[Any]:
    """Runs matching `where` by job and state."""
    return (
        select(runs.c.job_kind, runs.c.state, func.count())
        .where(where)
        .group_by(runs.c.job_kind, runs.c.state)
    )


def filters(query: RunQuery) -> list[Any]:
    clauses: list[Any] = []
    if query.jobs:
        clauses.append(runs.c.job_kind.in_(query.jobs))
    if query.states:
        clauses.append(runs.c.state.in_([s.value for s in query.states]))
    if query.concurrency_key:
        clauses.append(runs.c.concurrency_key == query.concurrency_key)
    if query.trigger is not None:
        clauses.append(runs.c.trigger == query.trigger.value)
    if query.parent_run_id:
        clauses.append(runs.c.parent_run_id == query.parent_run_id)
    if query.created_after is not None:
        clauses.append(runs.c.created_at >= query.created_after)
    if query.created_before is not None:
        clauses.append(runs.c.created_at < query.created_before)
    for key, value in query.labels.items():
        clauses.append(
            exists().where(
                labels.c.run_id == runs.c.id, labels.c.key == key, labels.c.value == value
            )
        )
    if query.after is not None:
        created, run_id = query.after
        clauses.append(
            or_(runs.c.created_at < created, and_(runs.c.created_at == created, runs.c.id < run_id))
        )
    return clauses


def to_step(row: dict[str, Any]) -> StepStatus:
    return StepStatus(
        name=row["name"],
        state=StepState(row["state"]),
        current=row["current"],
        total=row["total"],
        message=row["message"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        attempt=row["attempt"],
        output=row["output"],
    )


def to_run(row: dict[str, Any], step_list: list[StepStatus]) -> Run:
    return Run(
        id=row["id"],
        spec=from_json(row["job_kind"], row["job"]),
        state=RunState(row["state"]),
        concurrency_key=row["concurrency_key"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        created_at=row["created_at"],
        trigger=Trigger(row["trigger"]),
        labels=dict(row["labels"] or {}),
        steps=tuple(step_list),
        output=row["output"],
        error=RunError.from_json(row["error"]),
        schedule_id=row["schedule_id"],
        nominal_time=row["nominal_time"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        deadline_at=row["deadline_at"],
        not_before=row["not_before"],
        last_seq=row["last_seq"],
        worker_id=row["worker_id"],
        lease_expires_at=row["lease_expires_at"],
        cancel_requested_at=row["cancel_requested_at"],
        triggered_by=row["triggered_by"],
        cancelled_by=row["cancelled_by"],
        retried_by=row["retried_by"],
        parent_run_id=row["parent_run_id"] or "",
        children_total=row["children_total"] or 0,
        children_done=row["children_done"] or 0,
    )


def event_row(event: RunEvent) -> dict[str, Any]:
    return {
        "run_id": event.run_id,
        "seq": event.seq,
        "time": event.time,
        "attempt": event.attempt,
        "kind": event.kind.value,
        "data": event.data,
    }


def to_event(row: dict[str, Any]) -> RunEvent:
    return RunEvent(
        run_id=row["run_id"],
        seq=row["seq"],
        time=row["time"],
        attempt=row["attempt"],
        kind=EventKind(row["kind"]),
        data=dict(row["data"]),
    )
