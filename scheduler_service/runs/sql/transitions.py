"""State transitions of one run inside an open transaction: the building blocks of `SqlRunStore`'s
writes.

Each function takes the transaction's connection and the run's row as a mutable dict (locked by the
caller), writes the change and appends its events to the run's log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, select, update

from scheduler_service.db.models import ACTIVE_SLOT, QUEUED_SLOT, RunEventRow, RunRow, RunStepRow
from scheduler_service.errors import StaleAttempt
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    EventKind,
    LeaseLosses,
    Outcome,
    Run,
    RunError,
    RunEvent,
    RunState,
    StepReport,
    StepState,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.store import StopKind, StopRequest, Transition

runs = cast(Table, RunRow.__table__)
steps = cast(Table, RunStepRow.__table__)
events = cast(Table, RunEventRow.__table__)

Row = dict[str, Any]


@dataclass
class Tx:
    """One transaction's connection, clock reading and collected events."""

    conn: Connection
    now: datetime
    retry: RetryPolicy
    events: list[RunEvent] = field(default_factory=list)
    dispatchable: bool = False

    def transition(self, run: Run | None = None) -> Transition:
        """What the transaction did so far, addressed to `run`."""
        return Transition(run=run, events=list(self.events), dispatchable=self.dispatchable)


def lock_run(tx: Tx, run_id: str) -> Row | None:
    """The run's row, locked for the rest of the transaction (FOR UPDATE on PostgreSQL; SQLite
    transactions already hold the database write lock)."""
    result = tx.conn.execute(select(runs).where(runs.c.id == run_id).with_for_update())
    row = result.mappings().first()
    return dict(row) if row is not None else None


def lock_owned(tx: Tx, ref: AttemptRef, worker_id: str) -> Row:
    """The row of the run whose current attempt `ref` is running on `worker_id`, locked; raises
    `StaleAttempt` otherwise (the fencing check of every report from a crawler)."""
    row = lock_run(tx, ref.run_id)
    if (
        row is None
        or row["state"] != RunState.RUNNING.value
        or row["attempt"] != ref.attempt
        or row["worker_id"] != worker_id
    ):
        raise StaleAttempt(ref.run_id, ref.attempt)
    return row


def set_run(tx: Tx, run: Row, **values: Any) -> None:
    tx.conn.execute(update(runs).where(runs.c.id == run["id"]).values(**values))
    run.update(values)


def append(tx: Tx, run: Row, kind: EventKind, data: dict[str, Any]) -> RunEvent:
    """Append an event to the run's log with the next seq."""
    seq = run["last_seq"] + 1
    event = RunEvent(run["id"], seq, tx.now, run["attempt"], kind, data)
    tx.conn.execute(
        events.insert().values(
            run_id=event.run_id,
            seq=seq,
            time=tx.now,
            attempt=event.attempt,
            kind=kind.value,
            data=data,
        )
    )
    set_run(tx, run, last_seq=seq)
    tx.events.append(event)
    return event


def _state_data(state: RunState, reason: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"state": state.value, "reason": reason}
    data.update({key: value for key, value in extra.items() if value is not None})
    return data


def close_open_steps(tx: Tx, run: Row, state: StepState, message: str) -> None:
    """Steps left RUNNING by an attempt that ended without finishing them."""
    result = tx.conn.execute(
        select(steps.c.name)
        .where(steps.c.run_id == run["id"], steps.c.state == StepState.RUNNING.value)
        .order_by(steps.c.position)
    )
    for (name,) in result.all():
        tx.conn.execute(
            update(steps)
            .where(steps.c.run_id == run["id"], steps.c.name == name)
            .values(state=state.value, finished_at=tx.now, message=message)
        )
        append(
            tx,
            run,
            EventKind.STEP_FINISHED,
            {"step": name, "state": state.value, "message": message},
        )


def finish(
    tx: Tx,
    run: Row,
    state: RunState,
    reason: str,
    *,
    output: dict[str, Any] | None = None,
    error: RunError | None = None,
) -> None:
    """Move the run to terminal `state`, freeing its slot (and promoting its key's queued run)."""
    step_state = StepState.CANCELLED if state is RunState.CANCELLED else StepState.FAILED
    close_open_steps(tx, run, step_state, reason)
    held_active = run["slot"] == ACTIVE_SLOT
    error_json = error.to_json() if error else None
    set_run(
        tx,
        run,
        state=state.value,
        slot=None,
        finished_at=tx.now,
        worker_id="",
        lease_expires_at=None,
        not_before=None,
        output=output,
        error=error_json if state is not RunState.SUCCEEDED else None,
    )
    append(
        tx,
        run,
        EventKind.STATE_CHANGED,
        _state_data(state, reason, output=output, error=error_json),
    )
    if held_active:
        promote_queued(tx, run["concurrency_key"])


def promote_queued(tx: Tx, concurrency_key: str) -> None:
    # Read and locked in one statement: PostgreSQL re-checks the condition after waiting for the
    # lock, so a queued run cancelled meanwhile is not promoted back to life.
    result = tx.conn.execute(
        select(runs)
        .where(runs.c.concurrency_key == concurrency_key, runs.c.slot == QUEUED_SLOT)
        .with_for_update()
    )
    found = result.mappings().first()
    if found is None:
        return
    queued = dict(found)
    set_run(tx, queued, slot=ACTIVE_SLOT, state=RunState.PENDING.value, not_before=None)
    append(tx, queued, EventKind.STATE_CHANGED, _state_data(RunState.PENDING, "promoted"))
    tx.dispatchable = True


def retry_or_fail(tx: Tx, run: Row, error: RunError, reason: str) -> None:
    """A retryable failure: pending again after a backoff while the attempt budget lasts."""
    used = run["attempt"] - run["attempt_floor"]
    if used >= run["max_attempts"]:
        finish(tx, run, RunState.FAILED, f"{reason}; attempts exhausted", error=error)
        return
    close_open_steps(tx, run, StepState.FAILED, reason)
    not_before = tx.now + tx.retry.delay(used)
    set_run(
        tx,
        run,
        state=RunState.PENDING.value,
        attempt=run["attempt"] + 1,
        worker_id="",
        lease_expires_at=None,
        not_before=not_before,
        error=error.to_json(),
        cancel_requested_at=None,
    )
    append(
        tx,
        run,
        EventKind.STATE_CHANGED,
        _state_data(
            RunState.PENDING, reason, error=error.to_json(), retry_at=not_before.isoformat()
        ),
    )
    tx.dispatchable = tx.dispatchable or not_before <= tx.now


def release(tx: Tx, run: Row, reason: str) -> None:
    """Pending again at once, as a new attempt that does not count against the budget."""
    close_open_steps(tx, run, StepState.CANCELLED, reason)
    set_run(
        tx,
        run,
        state=RunState.PENDING.value,
        attempt=run["attempt"] + 1,
        attempt_floor=run["attempt_floor"] + 1,
        worker_id="",
        lease_expires_at=None,
        not_before=None,
    )
    append(tx, run, EventKind.STATE_CHANGED, _state_data(RunState.PENDING, reason))
    tx.dispatchable = True


def start_attempt(tx: Tx, run: Row, worker_id: str, lease_ttl: timedelta) -> None:
    set_run(
        tx,
        run,
        state=RunState.RUNNING.value,
        worker_id=worker_id,
        lease_expires_at=tx.now + lease_ttl,
        not_before=None,
        started_at=run["started_at"] or tx.now,
    )
    append(
        tx,
        run,
        EventKind.STATE_CHANGED,
        _state_data(RunState.RUNNING, "dispatched", worker=worker_id),
    )


def upsert_step(tx: Tx, run: Row, name: str, **values: Any) -> None:
    key = (steps.c.run_id == run["id"], steps.c.name == name)
    result = tx.conn.execute(update(steps).where(*key).values(**values))
    if result.rowcount:
        return
    position = tx.conn.execute(
        select(steps.c.position)
        .where(steps.c.run_id == run["id"])
        .order_by(steps.c.position.desc())
        .limit(1)
    )
    last = position.scalar()
    tx.conn.execute(
        steps.insert().values(
            run_id=run["id"],
            name=name,
            position=0 if last is None else last + 1,
            **{"state": StepState.PENDING.value, "attempt": run["attempt"], **values},
        )
    )


def renew(tx: Tx, worker_id: str, refs: list[AttemptRef], lease_ttl: timedelta) -> list[AttemptRef]:
    """Extend the leases of the attempts in `refs` that `worker_id` still holds."""
    renewed = []
    for ref in refs:
        result = tx.conn.execute(
            update(runs).where(*held(ref, worker_id)).values(lease_expires_at=tx.now + lease_ttl)
        )
        if result.rowcount:
            renewed.append(ref)
    return renewed


def held(ref: AttemptRef, worker_id: str) -> tuple[Any, ...]:
    return (
        runs.c.id == ref.run_id,
        runs.c.attempt == ref.attempt,
        runs.c.state == RunState.RUNNING.value,
        runs.c.worker_id == worker_id,
    )


def apply_report(tx: Tx, row: Row, report: StepReport) -> None:
    data: dict[str, Any] = {"step": report.step}
    if report.kind is EventKind.STEP_STARTED:
        upsert_step(
            tx,
            row,
            report.step,
            state=StepState.RUNNING.value,
            current=0,
            total=report.total,
            message=report.message,
            attempt=row["attempt"],
            started_at=tx.now,
            finished_at=None,
            output=None,
        )
        data.update(total=report.total, message=report.message)
    elif report.kind is EventKind.STEP_PROGRESS:
        upsert_step(
            tx,
            row,
            report.step,
            state=StepState.RUNNING.value,
            current=report.current,
            total=report.total,
            message=report.message,
        )
        data.update(current=report.current, total=report.total, message=report.message)
    else:
        output = report.output if report.state is StepState.SUCCEEDED else None
        upsert_step(
            tx,
            row,
            report.step,
            state=report.state.value,
            finished_at=tx.now,
            message=report.message,
            output=output,
        )
        data.update(state=report.state.value, message=report.message)
        if output is not None:
            data["output"] = output
    append(tx, row, report.kind, data)


def apply_result(tx: Tx, row: Row, result: AttemptResult) -> None:
    outcome = result.outcome
    if row["cancel_requested_at"] is not None and outcome is not Outcome.SUCCEEDED:
        outcome = Outcome.CANCELLED
    if outcome is Outcome.SUCCEEDED:
        finish(tx, row, RunState.SUCCEEDED, "succeeded", output=result.output or {})
    elif outcome is Outcome.CANCELLED:
        finish(tx, row, RunState.CANCELLED, "cancelled")
    elif outcome is Outcome.RELEASED:
        release(tx, row, "handed back by the crawler")
    else:
        error = result.error or RunError("UNKNOWN", "the attempt failed", False)
        if error.retryable:
            retry_or_fail(tx, row, error, "attempt failed")
        else:
            finish(tx, row, RunState.FAILED, "attempt failed", error=error)


def expire_one(tx: Tx, row: Row, cancel_grace: timedelta, losses: LeaseLosses) -> list[StopRequest]:
    """Apply whichever time limit `row` passed; returns the crawler stops to push."""
    now, state = tx.now, RunState(row["state"])
    stops = []
    if state is RunState.RUNNING:
        stops.append(
            StopRequest(
                row["worker_id"], AttemptRef(row["id"], row["attempt"]), StopKind.ABANDON, "expired"
            )
        )
    if row["deadline_at"] is not None and row["deadline_at"] < now and not state.terminal:
        error = RunError("DEADLINE_EXCEEDED", "the run did not finish before its deadline", False)
        finish(tx, row, RunState.FAILED, "deadline exceeded", error=error)
    elif state is not RunState.RUNNING:
        return []
    elif row["cancel_requested_at"] is not None and (
        row["cancel_requested_at"] < now - cancel_grace or row["lease_expires_at"] < now
    ):
        finish(tx, row, RunState.CANCELLED, "cancelled (forced after the grace period)")
    elif row["lease_expires_at"] is not None and row["lease_expires_at"] < now:
        error = losses.error(row["worker_id"])
        retry_or_fail(tx, row, error, error.message)
    else:
        return []
    return stops
