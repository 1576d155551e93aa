"""State transitions of one run inside an open transaction: the building blocks of `SqlRunStore`'s
writes.

Each function takes the transaction's connection and the run's row as a mutable dict (locked by the
caller), writes the change and appends its events to the run's log. Events are inserted together
(one statement) when the transaction is flushed before its commit, and a run's `last_seq` rides
along with the run's next UPDATE: an event costs no statement of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from common.jobs import from_json
from common.jobs.fanout import fans_out, needs_plan, planned
from scheduler_service.cluster.notice import NOTIFY
from scheduler_service.db.models import ACTIVE_SLOT
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
from scheduler_service.runs.sql import statements as q
from scheduler_service.runs.sql.step_reports import report_values
from scheduler_service.runs.store import StopKind, StopRequest, Transition

runs, steps, events = q.runs, q.steps, q.events

Row = dict[str, Any]


@dataclass
class Tx:
    """One transaction's connection, clock reading and collected events."""

    conn: Connection
    now: datetime
    retry: RetryPolicy
    events: list[RunEvent] = field(default_factory=list)
    dispatchable: bool = False
    #: A running run's cancellation was requested (its crawler may be on another replica).
    cancels: bool = False
    #: Rows of `events` not inserted yet.
    unwritten: list[dict[str, Any]] = field(default_factory=list)
    #: Runs whose `last_seq` in memory is ahead of the database's, by id.
    behind: dict[str, Row] = field(default_factory=dict)
    #: Fan-out work for `fanout.settle`: parents to expand (with their planned repositories, or
    #: None for the job's own list), children that ended, children's steps that started.
    expand: list[tuple[Row, list[str] | None]] = field(default_factory=list)
    ended_children: list[Row] = field(default_factory=list)
    child_steps: list[tuple[Row, str]] = field(default_factory=list)
    #: Step rows read by this transaction, by run id, kept up to date by its writes: a run's
    #: steps are read once for both closing its open steps and answering with the run.
    steps: dict[str, list[Row]] = field(default_factory=dict)

    def flush(self, notify: tuple[str, str] | None = None) -> None:
        """Write what is pending: every run's `last_seq`, then the events (before the commit, and
        before reading a run back). `notify` (PostgreSQL; channel, payload): the transaction's
        NOTIFY, sent with the events' INSERT (one round trip less) or alone."""
        for run_id, row in self.behind.items():
            q.UPDATE_RUN.run(self.conn, {"w_id": run_id, "last_seq": row["last_seq"]})
        self.behind.clear()
        if self.unwritten and notify is not None:
            params = q.events_notifying(self.unwritten, *notify)
            q.INSERT_EVENTS_NOTIFYING.run(self.conn, params)
        elif self.unwritten:
            q.INSERT_EVENT.many(self.conn, self.unwritten)
        elif notify is not None:
            self.conn.execute(NOTIFY, {"channel": notify[0], "payload": notify[1]})
        self.unwritten = []

    def absorb(self, part: Tx) -> None:
        """Take over what `part` (another `Tx` on the same connection) did, to be flushed and
        announced with this transaction's own."""
        self.events += part.events
        self.unwritten += part.unwritten
        self.behind.update(part.behind)
        self.dispatchable = self.dispatchable or part.dispatchable
        self.cancels = self.cancels or part.cancels

    def transition(self, run: Run | None = None) -> Transition:
        """What the transaction did so far, addressed to `run`."""
        return Transition(run=run, events=list(self.events), dispatchable=self.dispatchable)


def lock_run(tx: Tx, run_id: str) -> Row | None:
    """The run's row, locked for the rest of the transaction (FOR UPDATE on PostgreSQL; SQLite
    transactions already hold the database write lock)."""
    return q.LOCK_RUN.first(tx.conn, {"w_id": run_id})


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


def fenced(tx: Tx, ref: AttemptRef, worker_id: str, events: int) -> Row:
    """Like `lock_owned`, in the statement that also advances the run's last_seq by the
    `events` events the caller then appends (see `apply_reports`)."""
    params = {"w_id": ref.run_id, "w_attempt": ref.attempt, "w_worker": worker_id}
    row = q.FENCED_SEQS.first(tx.conn, {**params, "w_events": events})
    if row is None:
        raise StaleAttempt(ref.run_id, ref.attempt)
    row["last_seq"] -= events
    return row


def apply_reports(tx: Tx, ref: AttemptRef, worker_id: str, reports: Sequence[StepReport]) -> Row:
    """Record step reports of attempt `ref` (fenced): per report one event, and the steps."""
    row = fenced(tx, ref, worker_id, len(reports))
    # Consecutive reports of one step (started, progress, finished) are one write of the step.
    step: tuple[str, Row] | None = None
    for report in reports:
        values, data = report_values(tx.now, row, report)
        append(tx, row, report.kind, data)
        if step is not None and step[0] == report.step:
            step[1].update(values)
            continue
        if step is not None:
            upsert_step(tx, row, step[0], **step[1])
        step = (report.step, values)
    if step is not None:
        upsert_step(tx, row, step[0], **step[1])
    # The fenced UPDATE already wrote the last seq.
    tx.behind.pop(row["id"], None)
    if row["parent_run_id"]:
        started = [r.step for r in reports if r.kind is EventKind.STEP_STARTED]
        tx.child_steps += [(row, name) for name in started]
    return row


def set_run(tx: Tx, run: Row, **values: Any) -> None:
    if tx.behind.pop(run["id"], None) is not None:
        values.setdefault("last_seq", run["last_seq"])
    q.UPDATE_RUN.run(tx.conn, {"w_id": run["id"], **values})
    run.update(values)


def append(tx: Tx, run: Row, kind: EventKind, data: dict[str, Any]) -> RunEvent:
    """Append an event to the run's log with the next seq."""
    seq = run["last_seq"] + 1
    event = RunEvent(run["id"], seq, tx.now, run["attempt"], kind, data)
    tx.unwritten.append(
        {
            "run_id": event.run_id,
            "seq": seq,
            "time": tx.now,
            "attempt": event.attempt,
            "kind": kind.value,
            "data": data,
        }
    )
    run["last_seq"] = seq
    tx.behind[run["id"]] = run
    tx.events.append(event)
    return event


def change(tx: Tx, run: Row, data: dict[str, Any], **values: Any) -> None:
    """Set `values` on the run and log the STATE_CHANGED event `data`: one UPDATE, which also
    carries the event's seq. The event is of the run as changed (e.g. its new attempt)."""
    run.update(values)
    append(tx, run, EventKind.STATE_CHANGED, data)
    set_run(tx, run, **values)


def _state_data(state: RunState, reason: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"state": state.value, "reason": reason}
    data.update({key: value for key, value in extra.items() if value is not None})
    return data


def step_rows(tx: Tx, run_id: str) -> list[Row]:
    """The run's step rows in order, as this transaction left them."""
    rows = tx.steps.get(run_id)
    if rows is None:
        rows = tx.steps[run_id] = q.STEPS_OF_RUN.all(tx.conn, {"w_run": run_id})
    return rows


def close_open_steps(tx: Tx, run: Row, state: StepState, message: str) -> None:
    """Steps left RUNNING by an attempt that ended without finishing them."""
    for step in step_rows(tx, run["id"]):
        if step["state"] != StepState.RUNNING.value:
            continue
        values = {"state": state.value, "finished_at": tx.now, "message": message}
        q.UPDATE_STEP.run(tx.conn, {"w_run": run["id"], "w_name": step["name"], **values})
        step.update(values)
        append(
            tx,
            run,
            EventKind.STEP_FINISHED,
            {"step": step["name"], "state": state.value, "message": message},
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
    change(
        tx,
        run,
        _state_data(state, reason, output=output, error=error_json),
        state=state.value,
        slot=None,
        finished_at=tx.now,
        worker_id="",
        lease_expires_at=None,
        not_before=None,
        output=output,
        error=error_json if state is not RunState.SUCCEEDED else None,
    )
    if held_active:
        promote_queued(tx, run["concurrency_key"])
    if run["parent_run_id"]:
        tx.ended_children.append(run)


def promote_queued(tx: Tx, concurrency_key: str) -> None:
    # Read and locked in one statement: PostgreSQL re-checks the condition after waiting for the
    # lock, so a queued run cancelled meanwhile is not promoted back to life.
    queued = q.QUEUED_OF.first(tx.conn, {"w_key": concurrency_key})
    if queued is None:
        return
    data = _state_data(RunState.PENDING, "promoted")
    change(tx, queued, data, slot=ACTIVE_SLOT, state=RunState.PENDING.value, not_before=None)
    tx.dispatchable = True
    spec = from_json(queued["job_kind"], queued["job"])
    if fans_out(spec) and not needs_plan(spec):
        tx.expand.append((queued, None))  # fans out in `fanout.settle`


def retry_or_fail(tx: Tx, run: Row, error: RunError, reason: str) -> None:
    """A retryable failure: pending again after a backoff while the attempt budget lasts."""
    used = run["attempt"] - run["attempt_floor"]
    if used >= run["max_attempts"]:
        finish(tx, run, RunState.FAILED, f"{reason}; attempts exhausted", error=error)
        return
    close_open_steps(tx, run, StepState.FAILED, reason)
    not_before = tx.now + tx.retry.delay(used)
    change(
        tx,
        run,
        _state_data(
            RunState.PENDING, reason, error=error.to_json(), retry_at=not_before.isoformat()
        ),
        state=RunState.PENDING.value,
        attempt=run["attempt"] + 1,
        worker_id="",
        lease_expires_at=None,
        not_before=not_before,
        error=error.to_json(),
        cancel_requested_at=None,
    )
    tx.dispatchable = tx.dispatchable or not_before <= tx.now


def release(tx: Tx, run: Row, reason: str, retry_after: timedelta | None = None) -> None:
    """Pending again (at once, or after `retry_after`), as a new attempt that does not count
    against the budget."""
    close_open_steps(tx, run, StepState.CANCELLED, reason)
    not_before = tx.now + retry_after if retry_after else None
    retry_at = not_before.isoformat() if not_before is not None else None
    change(
        tx,
        run,
        _state_data(RunState.PENDING, reason, retry_at=retry_at),
        state=RunState.PENDING.value,
        attempt=run["attempt"] + 1,
        attempt_floor=run["attempt_floor"] + 1,
        worker_id="",
        lease_expires_at=None,
        not_before=not_before,
    )
    tx.dispatchable = tx.dispatchable or not_before is None


def start_attempt(tx: Tx, run: Row, worker_id: str, lease_ttl: timedelta) -> None:
    change(
        tx,
        run,
        _state_data(RunState.RUNNING, "dispatched", worker=worker_id),
        state=RunState.RUNNING.value,
        worker_id=worker_id,
        lease_expires_at=tx.now + lease_ttl,
        not_before=None,
        started_at=run["started_at"] or tx.now,
    )


def upsert_step(tx: Tx, run: Row, name: str, **values: Any) -> None:
    new = {"state": StepState.PENDING.value, "attempt": run["attempt"]}
    tx.steps.pop(run["id"], None)
    q.upsert_step(tx.conn, run["id"], name, new, values)


def renew(tx: Tx, worker_id: str, refs: list[AttemptRef], lease_ttl: timedelta) -> list[AttemptRef]:
    """Extend the leases of the attempts in `refs` that `worker_id` still holds."""
    renewed = []
    for ref in refs:
        params = {"w_id": ref.run_id, "w_attempt": ref.attempt, "w_worker": worker_id}
        if q.RENEW.run(tx.conn, {**params, "lease_expires_at": tx.now + lease_ttl}):
            renewed.append(ref)
    return renewed


def apply_result(tx: Tx, row: Row, result: AttemptResult) -> None:
    outcome = result.outcome
    if row["cancel_requested_at"] is not None and outcome is not Outcome.SUCCEEDED:
        outcome = Outcome.CANCELLED
    repositories = planned(result.output) if outcome is Outcome.SUCCEEDED else None
    if repositories is not None and needs_plan(from_json(row["job_kind"], row["job"])):
        # A plan attempt (see `common.jobs.fanout`): the children come in `fanout.settle`.
        if row["cancel_requested_at"] is None:
            tx.expand.append((row, repositories))
        else:
            finish(tx, row, RunState.CANCELLED, "cancelled")
    elif outcome is Outcome.SUCCEEDED:
        finish(tx, row, RunState.SUCCEEDED, "succeeded", output=result.output or {})
    elif outcome is Outcome.CANCELLED:
        finish(tx, row, RunState.CANCELLED, "cancelled")
    elif outcome is Outcome.RELEASED:
        why = f": {result.error.message}" if result.error is not None else ""
        release(tx, row, f"handed back by the crawler{why}", result.retry_after)
    else:
        error = result.error or RunError("UNKNOWN", "the attempt failed", False)
        if error.retryable:
            retry_or_fail(tx, row, error, "attempt failed")
        else:
            finish(tx, row, RunState.FAILED, "attempt failed", error=error)


def expire_one(tx: Tx, row: Row, cancel_grace: timedelta, losses: LeaseLosses) -> list[StopRequest]:
    """Apply whichever time limit `row` passed; returns the crawler stops to push."""
    now, state = tx.now, RunState(row["state"])
    if state is RunState.RUNNING and not row["worker_id"]:
        return []  # a fan-out parent: its children have the leases and deadlines
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
