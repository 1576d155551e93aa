"""The run store's transactions as plain synchronous SQLAlchemy code.

`SqlRunStore` runs each method here as one call on a database thread: a whole transaction costs one
hand-off between the event loop and the thread, instead of several per statement with an async
driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, select, update
from sqlalchemy.exc import IntegrityError

from common.errors import Unavailable
from common.jobs import to_json
from scheduler_service.db.models import ACTIVE, QUEUED, IdempotencyRow, RunLabelRow
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
    Disposition,
    EventKind,
    NewRun,
    Run,
    RunError,
    RunEvent,
    RunQuery,
    RunState,
    StepReport,
    new_run_id,
)
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql import reads
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.store import (
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
reads.ACTIVE_STATES = (RunState.PENDING.value, RunState.QUEUED.value, RunState.RUNNING.value)
RUNNING = RunState.RUNNING.value
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
            return reads.load(conn, run_id)

    def list_runs(self, query: RunQuery) -> list[Run]:
        with self._reader.connect() as conn:
            return reads.list_runs(conn, query)

    def events_after(self, run_id: str, after_seq: int, limit: int = 1000) -> list[RunEvent]:
        with self._reader.connect() as conn:
            return reads.events_after(conn, run_id, after_seq, limit)

    def expiry_candidates(self, now: datetime, cancel_grace: timedelta) -> list[str]:
        with self._reader.connect() as conn:
            return reads.expiry_candidates(conn, now, cancel_grace)

    def pending_cancels(self, worker_ids: list[str]) -> list[StopRequest]:
        if not worker_ids:
            return []
        with self._reader.connect() as conn:
            return reads.pending_cancels(conn, worker_ids)

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
        raise Unavailable(
            "too much contention creating the run; retry", retry_after=timedelta(seconds=1)
        )

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
        run = reads.to_run(inserted, []) if inserted else reads.load(tx.conn, run_id)
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
        try:
            run = reads.load(tx.conn, record["run_id"])
        except RunNotFound:
            # Purged (retention shorter than the key's TTL): the key is free again.
            tx.conn.execute(delete(idempotency).where(idempotency.c.request_id == new.request_id))
            return None
        return Created(run, Disposition.IDEMPOTENT, Transition(run=run))

    def _slot_holder(self, tx: t.Tx, key: str, slot: str) -> str | None:
        # Locked (PostgreSQL): a trigger that queues behind the active run must wait for a
        # transaction finishing that run, or the finish promotes nothing and the queued run is
        # orphaned; after the wait the row no longer matches and the trigger takes the slot.
        result = tx.conn.execute(
            select(runs.c.id)
            .where(runs.c.concurrency_key == key, runs.c.slot == slot)
            .with_for_update()
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
            "job_kind": new.spec.job_kind.value,
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
        tx.conn.execute(events.insert(), reads.event_row(event))
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
            .where(*reads.dispatchable(tx.now))
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
        step_rows = reads.steps_of(tx.conn, [row["id"]])
        return reads.to_run(row, step_rows.get(row["id"], []))

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
            t.apply_report(tx, row, report)
            return self._transition(tx)

    def finish_attempt(
        self, ref: AttemptRef, worker_id: str, result: AttemptResult, now: datetime
    ) -> Transition:
        with self._tx(now) as tx:
            row = self._owned(tx, ref, worker_id)
            t.apply_result(tx, row, result)
            return self._transition(tx, reads.load(tx.conn, ref.run_id))

    def renew_leases(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> list[AttemptRef]:
        with self._tx(now) as tx:
            return t.renew(tx, worker_id, refs, lease_ttl)

    def reattach(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> Reattachment:
        with self._tx(now) as tx:
            reattached = t.renew(tx, worker_id, refs, lease_ttl)
            abandoned = [ref for ref in refs if ref not in reattached]
            held = {ref.run_id for ref in reattached}
            lost = tx.conn.execute(
                select(runs.c.id).where(
                    runs.c.worker_id == worker_id, runs.c.state == RunState.RUNNING.value
                )
            )
            for run_id in [r for r in lost.scalars() if r not in held]:
                row = t.lock_run(tx, run_id)
                if row is None or (row["state"], row["worker_id"]) != (RUNNING, worker_id):
                    # Changed since the unlocked read (e.g. the sweep expired or failed it).
                    continue
                if row["cancel_requested_at"] is not None:
                    # Its cancellation was requested: retrying would run a cancelled run again.
                    t.finish(tx, row, RunState.CANCELLED, "cancelled (the crawler restarted)")
                    continue
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
            transition = self._transition(tx, reads.load(tx.conn, run_id))
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
                    # A fresh deadline as long as the first: a run that failed past its deadline
                    # would otherwise never be dispatched and fail again at the next sweep.
                    deadline_at=_fresh_deadline(row, now),
                )
                t.append(
                    tx,
                    row,
                    EventKind.STATE_CHANGED,
                    {"state": RunState.PENDING.value, "reason": "retry requested"},
                )
                tx.dispatchable = True
                return self._transition(tx, reads.load(tx.conn, run_id))
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
                stops = t.expire_one(tx, row, cancel_grace)
                step = self._transition(tx)
                step.stops = stops
                total.merge(step)
        return total

    def purge(self, finished_before: datetime, now: datetime) -> int:
        with self._tx(now) as tx:
            tx.conn.execute(delete(idempotency).where(idempotency.c.expires_at <= now))
            result = tx.conn.execute(
                delete(runs).where(
                    runs.c.slot.is_(None),
                    runs.c.state.not_in(reads.ACTIVE_STATES),
                    runs.c.finished_at < finished_before,
                )
            )
            return int(result.rowcount or 0)


def _fresh_deadline(row: t.Row, now: datetime) -> datetime | None:
    if row["deadline_at"] is None:
        return None
    allowed: timedelta = row["deadline_at"] - row["created_at"]
    return now + allowed
