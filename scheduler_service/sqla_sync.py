"""The run store's transactions as plain synchronous SQLAlchemy code.

`SqlRunStore` runs each method here as one call on a database thread: a whole transaction costs one
hand-off between the event loop and the thread, instead of several per statement with an async
driver.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from common import db
from common.errors import Unavailable
from common.jobs import from_json, to_json
from scheduler_service import sqla_transitions as t
from scheduler_service.errors import (
    IdempotencyMismatch,
    RunConflict,
    RunFinished,
    RunNotFound,
    RunNotRetryable,
    StaleAttempt,
)
from scheduler_service.models import ACTIVE, QUEUED, IdempotencyRow, RunLabelRow
from scheduler_service.retries import RetryPolicy
from scheduler_service.runs import (
    AttemptRef,
    AttemptResult,
    Disposition,
    EventKind,
    NewRun,
    Outcome,
    Run,
    RunError,
    RunEvent,
    RunQuery,
    RunState,
    StepReport,
    StepState,
    StepStatus,
    Trigger,
    new_run_id,
)
from scheduler_service.store import (
    Claim,
    Created,
    Reattachment,
    StopKind,
    StopRequest,
    Transition,
)

runs, steps, events = t.runs, t.steps, t.events
labels = cast(Table, RunLabelRow.__table__)
idempotency = cast(Table, IdempotencyRow.__table__)
_ACTIVE_STATES = (RunState.PENDING.value, RunState.QUEUED.value, RunState.RUNNING.value)
_CONTENTION_RETRIES = 8


class SyncRunStore:
    """The store's operations on synchronous engines (documented on `RunStore`)."""

    def __init__(self, engine: Engine, reader: Engine, retry: RetryPolicy) -> None:
        self._engine = engine
        self._reader = reader
        self._retry = retry

    @contextmanager
    def _tx(self, now: datetime) -> Iterator[t.Tx]:
        with self._engine.begin() as conn:
            yield t.Tx(conn, now, self._retry)

    @staticmethod
    def _transition(tx: t.Tx, run: Run | None = None) -> Transition:
        return Transition(run=run, events=list(tx.events), dispatchable=tx.dispatchable)

    # -- reads -------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        with self._reader.connect() as conn:
            return self._load(conn, run_id)

    def _load(self, conn: Connection, run_id: str) -> Run:
        row = (conn.execute(select(runs).where(runs.c.id == run_id))).mappings().first()
        if row is None:
            raise RunNotFound(run_id)
        step_rows = self._steps(conn, [run_id])
        return _to_run(dict(row), step_rows.get(run_id, []))

    @staticmethod
    def _steps(conn: Connection, run_ids: Sequence[str]) -> dict[str, list[StepStatus]]:
        result = conn.execute(
            select(steps)
            .where(steps.c.run_id.in_(run_ids))
            .order_by(steps.c.run_id, steps.c.position)
        )
        by_run: dict[str, list[StepStatus]] = {}
        for row in result.mappings():
            by_run.setdefault(row["run_id"], []).append(_to_step(dict(row)))
        return by_run

    def list_runs(self, query: RunQuery) -> list[Run]:
        statement = (
            select(runs)
            .where(*_filters(query))
            .order_by(runs.c.created_at.desc(), runs.c.id.desc())
            .limit(query.page_size + 1)
        )
        with self._reader.connect() as conn:
            rows = [dict(r) for r in (conn.execute(statement)).mappings()]
            step_rows = self._steps(conn, [r["id"] for r in rows])
        return [_to_run(row, step_rows.get(row["id"], [])) for row in rows]

    def events_after(self, run_id: str, after_seq: int, limit: int = 1000) -> list[RunEvent]:
        statement = (
            select(events)
            .where(events.c.run_id == run_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
            .limit(limit)
        )
        with self._reader.connect() as conn:
            return [_to_event(dict(r)) for r in (conn.execute(statement)).mappings()]

    def next_due(self, now: datetime) -> datetime | None:
        statement = select(func.min(runs.c.not_before)).where(
            runs.c.state == RunState.PENDING.value, runs.c.not_before > now
        )
        with self._reader.connect() as conn:
            value = (conn.execute(statement)).scalar()
        return db.UTCDateTime().process_result_value(value, self._reader.dialect)

    def has_dispatchable(self, now: datetime) -> bool:
        statement = select(runs.c.id).where(*_dispatchable(now)).limit(1)
        with self._reader.connect() as conn:
            return (conn.execute(statement)).first() is not None

    # -- creating runs -----------------------------------------------------------------------

    def create_run(
        self, new: NewRun, now: datetime, idempotency_ttl: timedelta, claim: Claim | None = None
    ) -> Created:
        for _ in range(_CONTENTION_RETRIES):
            try:
                with self._tx(now) as tx:
                    created = self._create(tx, new, idempotency_ttl)
                    if claim is None or not tx.dispatchable:
                        return created
                    return self._create_and_claim(tx, created, claim)
            except IntegrityError:
                # Another process won a race on the same key or request_id (PostgreSQL; SQLite
                # transactions are serialized): the next pass sees its row.
                continue
        raise Unavailable("too much contention creating the run; retry", retry_after=timedelta(1))

    def _create(self, tx: t.Tx, new: NewRun, ttl: timedelta) -> Created:
        if new.request_id:
            previous = self._idempotent(tx, new)
            if previous is not None:
                return previous
        run_id, disposition, inserted = self._resolve_conflict(tx, new)
        if new.request_id:
            tx.conn.execute(
                idempotency.insert().values(
                    request_id=new.request_id,
                    payload_hash=new.payload_hash,
                    run_id=run_id,
                    disposition=disposition.value,
                    created_at=tx.now,
                    expires_at=tx.now + ttl,
                )
            )
        # A run inserted by this transaction is known without reading it back (it has no steps).
        run = _to_run(inserted, []) if inserted else self._load(tx.conn, run_id)
        return Created(run, disposition, self._transition(tx, run))

    def _idempotent(self, tx: t.Tx, new: NewRun) -> Created | None:
        result = tx.conn.execute(
            select(idempotency).where(idempotency.c.request_id == new.request_id)
        )
        record = result.mappings().first()
        if record is None:
            return None
        if record["expires_at"] <= tx.now:
            tx.conn.execute(delete(idempotency).where(idempotency.c.request_id == new.request_id))
            return None
        if record["payload_hash"] != new.payload_hash:
            raise IdempotencyMismatch(new.request_id, record["run_id"])
        run = self._load(tx.conn, record["run_id"])
        return Created(run, Disposition.IDEMPOTENT, Transition(run=run))

    def _slot_holder(self, tx: t.Tx, key: str, slot: str) -> str | None:
        result = tx.conn.execute(
            select(runs.c.id).where(runs.c.concurrency_key == key, runs.c.slot == slot)
        )
        return result.scalar()

    def _resolve_conflict(self, tx: t.Tx, new: NewRun) -> tuple[str, Disposition, t.Row | None]:
        """The run the trigger resolves to, its disposition and, if inserted, its row."""
        active = self._slot_holder(tx, new.concurrency_key, ACTIVE)
        if active is None:
            row = self._insert(tx, new, ACTIVE)
            return row["id"], Disposition.CREATED, row
        if new.policy == "reject":
            raise RunConflict(new.concurrency_key, active)
        if new.policy == "join":
            return active, Disposition.JOINED, None
        queued = self._slot_holder(tx, new.concurrency_key, QUEUED)
        if queued is not None:
            return queued, Disposition.JOINED, None
        row = self._insert(tx, new, QUEUED)
        return row["id"], Disposition.QUEUED, row

    def _insert(self, tx: t.Tx, new: NewRun, slot: str) -> t.Row:
        state = RunState.PENDING if slot == ACTIVE else RunState.QUEUED
        row: dict[str, Any] = {
            "id": new_run_id(),
            "job_kind": new.spec.kind.value,
            "job": to_json(new.spec),
            "state": state.value,
            "slot": slot,
            "concurrency_key": new.concurrency_key,
            "attempt": 1,
            "attempt_floor": 0,
            "max_attempts": new.max_attempts,
            "trigger": new.trigger.value,
            "schedule_id": new.schedule_id,
            "nominal_time": new.nominal_time,
            "labels": dict(new.labels),
            "created_at": tx.now,
            "deadline_at": new.deadline_at,
            "worker_id": "",
            "last_seq": 0,
            "started_at": None,
            "finished_at": None,
            "not_before": None,
            "lease_expires_at": None,
            "cancel_requested_at": None,
            "output": None,
            "error": None,
        }
        # The run is written with its first event's seq already counted: one statement less
        # than inserting it with 0 and letting `t.append` bump it.
        event = RunEvent(
            row["id"],
            1,
            tx.now,
            1,
            EventKind.STATE_CHANGED,
            {"state": state.value, "reason": "created"},
        )
        row["last_seq"] = event.seq
        # Parameters passed separately (not `.values(**row)`) keep the compiled statement cached.
        tx.conn.execute(runs.insert(), row)
        if new.labels:
            tx.conn.execute(
                labels.insert(),
                [{"run_id": row["id"], "key": k, "value": v} for k, v in new.labels.items()],
            )
        tx.conn.execute(events.insert(), _event_row(event))
        tx.events.append(event)
        tx.dispatchable = slot == ACTIVE
        return row

    # -- dispatch and reports from crawlers ----------------------------------------------------

    def _create_and_claim(self, tx: t.Tx, created: Created, claim: Claim) -> Created:
        claimed = self._claim_in(tx, claim.worker_id, claim.lease_ttl)
        # The oldest dispatchable run was claimed; if it is the new one, nothing else waits.
        tx.dispatchable = claimed is None or claimed.id != created.run.id
        return replace(created, transition=self._transition(tx, created.run), claimed=claimed)

    def claim(self, worker_id: str, now: datetime, lease_ttl: timedelta) -> Transition:
        with self._tx(now) as tx:
            return self._transition(tx, self._claim_in(tx, worker_id, lease_ttl))

    def _claim_in(self, tx: t.Tx, worker_id: str, lease_ttl: timedelta) -> Run | None:
        # The whole row, locked by this one statement (FOR UPDATE SKIP LOCKED on PostgreSQL;
        # SQLite transactions hold the write lock): no second read to lock it.
        statement = (
            select(runs)
            .where(*_dispatchable(tx.now))
            .order_by(runs.c.created_at, runs.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        found = (tx.conn.execute(statement)).mappings().first()
        if found is None:
            return None
        row = dict(found)
        t.start_attempt(tx, row, worker_id, lease_ttl)
        # `start_attempt` keeps `row` up to date: only the steps need reading.
        step_rows = self._steps(tx.conn, [row["id"]])
        return _to_run(row, step_rows.get(row["id"], []))

    def _owned(self, tx: t.Tx, ref: AttemptRef, worker_id: str) -> t.Row:
        row = t.lock_run(tx, ref.run_id)
        if (
            row is None
            or row["state"] != RunState.RUNNING.value
            or row["attempt"] != ref.attempt
            or row["worker_id"] != worker_id
        ):
            raise StaleAttempt(ref.run_id, ref.attempt)
        return row

    def record_step(
        self, ref: AttemptRef, worker_id: str, report: StepReport, now: datetime
    ) -> Transition:
        with self._tx(now) as tx:
            row = self._owned(tx, ref, worker_id)
            _apply_report(tx, row, report)
            return self._transition(tx)

    def finish_attempt(
        self, ref: AttemptRef, worker_id: str, result: AttemptResult, now: datetime
    ) -> Transition:
        with self._tx(now) as tx:
            row = self._owned(tx, ref, worker_id)
            _apply_result(tx, row, result)
            return self._transition(tx, self._load(tx.conn, ref.run_id))

    def renew_leases(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> list[AttemptRef]:
        with self._tx(now) as tx:
            return _renew(tx, worker_id, refs, lease_ttl)

    def reattach(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> Reattachment:
        with self._tx(now) as tx:
            reattached = _renew(tx, worker_id, refs, lease_ttl)
            abandoned = [ref for ref in refs if ref not in reattached]
            held = {ref.run_id for ref in reattached}
            lost = tx.conn.execute(
                select(runs.c.id).where(
                    runs.c.worker_id == worker_id, runs.c.state == RunState.RUNNING.value
                )
            )
            for run_id in [r for r in lost.scalars() if r not in held]:
                row = t.lock_run(tx, run_id)
                assert row is not None
                error = RunError("WORKER_LOST", "the crawler no longer had this run", True)
                t.retry_or_fail(tx, row, error, "crawler restarted")
            return Reattachment(reattached, abandoned, self._transition(tx))

    def shorten_leases(self, worker_id: str, until: datetime) -> None:
        with self._tx(until) as tx:
            tx.conn.execute(
                update(runs)
                .where(
                    runs.c.worker_id == worker_id,
                    runs.c.state == RunState.RUNNING.value,
                    runs.c.lease_expires_at > until,
                )
                .values(lease_expires_at=until)
            )

    # -- client operations --------------------------------------------------------------------

    def cancel_run(self, run_id: str, reason: str, now: datetime) -> Transition:
        with self._tx(now) as tx:
            row = t.lock_run(tx, run_id)
            if row is None:
                raise RunNotFound(run_id)
            state = RunState(row["state"])
            stops: list[StopRequest] = []
            if state in (RunState.SUCCEEDED, RunState.FAILED):
                raise RunFinished(run_id, state.value, "cancel")
            if state in (RunState.PENDING, RunState.QUEUED):
                t.finish(tx, row, RunState.CANCELLED, reason or "cancelled")
            elif state is RunState.RUNNING:
                if row["cancel_requested_at"] is None:
                    t.set_run(tx, row, cancel_requested_at=now)
                stops.append(
                    StopRequest(
                        row["worker_id"],
                        AttemptRef(run_id, row["attempt"]),
                        StopKind.CANCEL,
                        reason or "cancelled",
                    )
                )
            transition = self._transition(tx, self._load(tx.conn, run_id))
            transition.stops = stops
            return transition

    def retry_run(self, run_id: str, now: datetime) -> Transition:
        try:
            with self._tx(now) as tx:
                row = t.lock_run(tx, run_id)
                if row is None:
                    raise RunNotFound(run_id)
                if row["state"] != RunState.FAILED.value:
                    raise RunNotRetryable(run_id, row["state"])
                active = self._slot_holder(tx, row["concurrency_key"], ACTIVE)
                if active is not None:
                    raise RunConflict(row["concurrency_key"], active)
                t.set_run(
                    tx,
                    row,
                    state=RunState.PENDING.value,
                    slot=ACTIVE,
                    attempt=row["attempt"] + 1,
                    attempt_floor=row["attempt"],
                    finished_at=None,
                    not_before=None,
                    error=None,
                    cancel_requested_at=None,
                )
                t.append(
                    tx,
                    row,
                    EventKind.STATE_CHANGED,
                    {"state": RunState.PENDING.value, "reason": "retry requested"},
                )
                tx.dispatchable = True
                return self._transition(tx, self._load(tx.conn, run_id))
        except IntegrityError:
            run = self.get_run(run_id)
            raise RunConflict(run.concurrency_key, "(another run)") from None

    # -- time ------------------------------------------------------------------------------

    def expire(self, candidates: list[str], now: datetime, cancel_grace: timedelta) -> Transition:
        """Apply time limits to `candidates` (from `expiry_candidates`), one transaction each."""
        total = Transition()
        for run_id in candidates:
            with self._tx(now) as tx:
                row = t.lock_run(tx, run_id)
                if row is None:
                    continue
                stops = _expire_one(tx, row, cancel_grace)
                step = self._transition(tx)
                step.stops = stops
                total.merge(step)
        return total

    def expiry_candidates(self, now: datetime, cancel_grace: timedelta) -> list[str]:
        running = runs.c.state == RunState.RUNNING.value
        statement = select(runs.c.id).where(
            or_(
                and_(running, runs.c.lease_expires_at < now),
                and_(running, runs.c.cancel_requested_at < now - cancel_grace),
                and_(runs.c.state.in_(_ACTIVE_STATES), runs.c.deadline_at < now),
            )
        )
        with self._reader.connect() as conn:
            return list((conn.execute(statement)).scalars())

    def pending_cancels(self, worker_ids: list[str]) -> list[StopRequest]:
        if not worker_ids:
            return []
        statement = select(runs.c.id, runs.c.attempt, runs.c.worker_id).where(
            runs.c.state == RunState.RUNNING.value,
            runs.c.cancel_requested_at.is_not(None),
            runs.c.worker_id.in_(worker_ids),
        )
        with self._reader.connect() as conn:
            rows = (conn.execute(statement)).all()
        return [
            StopRequest(worker, AttemptRef(run_id, attempt), StopKind.CANCEL, "cancelled")
            for run_id, attempt, worker in rows
        ]

    def purge(self, finished_before: datetime, now: datetime) -> int:
        with self._tx(now) as tx:
            tx.conn.execute(delete(idempotency).where(idempotency.c.expires_at <= now))
            result = tx.conn.execute(
                delete(runs).where(
                    runs.c.slot.is_(None),
                    runs.c.state.not_in(_ACTIVE_STATES),
                    runs.c.finished_at < finished_before,
                )
            )
            return int(result.rowcount or 0)


# -- helpers ------------------------------------------------------------------------------------


def _renew(
    tx: t.Tx, worker_id: str, refs: list[AttemptRef], lease_ttl: timedelta
) -> list[AttemptRef]:
    """Extend the leases of the attempts in `refs` that `worker_id` still holds."""
    renewed = []
    for ref in refs:
        result = tx.conn.execute(
            update(runs).where(*_held(ref, worker_id)).values(lease_expires_at=tx.now + lease_ttl)
        )
        if result.rowcount:
            renewed.append(ref)
    return renewed


def _held(ref: AttemptRef, worker_id: str) -> tuple[Any, ...]:
    return (
        runs.c.id == ref.run_id,
        runs.c.attempt == ref.attempt,
        runs.c.state == RunState.RUNNING.value,
        runs.c.worker_id == worker_id,
    )


def _dispatchable(now: datetime) -> tuple[Any, ...]:
    return (
        runs.c.state == RunState.PENDING.value,
        or_(runs.c.not_before.is_(None), runs.c.not_before <= now),
        or_(runs.c.deadline_at.is_(None), runs.c.deadline_at > now),
    )


def _filters(query: RunQuery) -> list[Any]:
    clauses: list[Any] = []
    if query.jobs:
        clauses.append(runs.c.job_kind.in_(query.jobs))
    if query.states:
        clauses.append(runs.c.state.in_([s.value for s in query.states]))
    if query.concurrency_key:
        clauses.append(runs.c.concurrency_key == query.concurrency_key)
    if query.trigger is not None:
        clauses.append(runs.c.trigger == query.trigger.value)
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


def _apply_report(tx: t.Tx, row: t.Row, report: StepReport) -> None:
    data: dict[str, Any] = {"step": report.step}
    if report.kind is EventKind.STEP_STARTED:
        t.upsert_step(
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
        t.upsert_step(
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
        t.upsert_step(
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
    t.append(tx, row, report.kind, data)


def _apply_result(tx: t.Tx, row: t.Row, result: AttemptResult) -> None:
    outcome = result.outcome
    if row["cancel_requested_at"] is not None and outcome is not Outcome.SUCCEEDED:
        outcome = Outcome.CANCELLED
    if outcome is Outcome.SUCCEEDED:
        t.finish(tx, row, RunState.SUCCEEDED, "succeeded", output=result.output or {})
    elif outcome is Outcome.CANCELLED:
        t.finish(tx, row, RunState.CANCELLED, "cancelled")
    elif outcome is Outcome.RELEASED:
        t.release(tx, row, "handed back by the crawler")
    else:
        error = result.error or RunError("UNKNOWN", "the attempt failed", False)
        if error.retryable:
            t.retry_or_fail(tx, row, error, "attempt failed")
        else:
            t.finish(tx, row, RunState.FAILED, "attempt failed", error=error)


def _expire_one(tx: t.Tx, row: t.Row, cancel_grace: timedelta) -> list[StopRequest]:
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
        t.finish(tx, row, RunState.FAILED, "deadline exceeded", error=error)
    elif state is not RunState.RUNNING:
        return []
    elif row["cancel_requested_at"] is not None and (
        row["cancel_requested_at"] < now - cancel_grace or row["lease_expires_at"] < now
    ):
        t.finish(tx, row, RunState.CANCELLED, "cancelled (forced after the grace period)")
    elif row["lease_expires_at"] is not None and row["lease_expires_at"] < now:
        error = RunError("WORKER_LOST", "the crawler's lease expired", True)
        t.retry_or_fail(tx, row, error, "lease expired")
    else:
        return []
    return stops


def _to_step(row: dict[str, Any]) -> StepStatus:
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


def _to_run(row: dict[str, Any], step_list: list[StepStatus]) -> Run:
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
    )


def _event_row(event: RunEvent) -> dict[str, Any]:
    return {
        "run_id": event.run_id,
        "seq": event.seq,
        "time": event.time,
        "attempt": event.attempt,
        "kind": event.kind.value,
        "data": event.data,
    }


def _to_event(row: dict[str, Any]) -> RunEvent:
    return RunEvent(
        run_id=row["run_id"],
        seq=row["seq"],
        time=row["time"],
        attempt=row["attempt"],
        kind=EventKind(row["kind"]),
        data=dict(row["data"]),
    )
