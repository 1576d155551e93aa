"""Creating a run inside an open transaction: the request-id key, the conflict policy against the
concurrency key's slots, and the new run's rows."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.exc import IntegrityError

from common.jobs import to_json
from scheduler_service.db.models import ACTIVE_SLOT, QUEUED_SLOT, IdempotencyRow, RunLabelRow
from scheduler_service.errors import IdempotencyMismatch, RunConflict, RunNotFound
from scheduler_service.runs.model import (
    Disposition,
    EventKind,
    NewRun,
    Run,
    RunEvent,
    RunState,
    new_run_id,
)
from scheduler_service.runs.sql import reads
from scheduler_service.runs.sql import statements as q
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.store import Claim, Created, Transition

runs, events = t.runs, t.events
labels = cast(Table, RunLabelRow.__table__)
idempotency = cast(Table, IdempotencyRow.__table__)
_INSERT_LABEL = labels.insert()
_INSERT_KEY = idempotency.insert()
_FIND_KEY = select(idempotency).where(idempotency.c.request_id == bindparam("w_id"))
_DELETE_KEY = delete(idempotency).where(idempotency.c.request_id == bindparam("w_id"))
#: Passes over a slot freed between the INSERT and the read of its holder.
_FREED_RETRIES = 3


@dataclass(frozen=True)
class Trigger:
    """A `RunStore.create_run` call's arguments."""

    new: NewRun
    now: datetime
    ttl: timedelta
    claim: Claim | None = None


def create_and_claim(tx: t.Tx, trigger: Trigger) -> Created:
    """`RunStore.create_run` inside the open transaction `tx`."""
    claim = trigger.claim
    if claim is None:
        return create(tx, trigger.new, trigger.ttl)
    # The claim looks first: with nothing older dispatchable, a new run is inserted already
    # running on the claiming crawler (one INSERT instead of an INSERT, a claim and an UPDATE).
    # An older run is started only once the trigger's own outcome is known (a refusal writes
    # nothing).
    older = tx.conn.execute(q.NEXT_DISPATCHABLE, {"w_now": tx.now}).mappings().first()
    created = create(tx, trigger.new, trigger.ttl, None if older else claim)
    if older is None:
        return created
    claimed = start(tx, dict(older), claim.worker_id, claim.lease_ttl)
    return replace(created, transition=tx.transition(created.run), claimed=claimed)


def create(tx: t.Tx, new: NewRun, ttl: timedelta, run_on: Claim | None = None) -> Created:
    """The run `new` resolves to (see `RunStore.create_run`), its request id recorded for `ttl`;
    with `run_on`, a run it creates is inserted running on that crawler (`Created.claimed`)."""
    if new.request_id:
        previous = _idempotent(tx, new)
        if previous is not None:
            return previous
    run_id, disposition, inserted = _resolve_conflict(tx, new, run_on)
    if new.request_id:
        tx.conn.execute(
            _INSERT_KEY,
            {
                "request_id": new.request_id,
                "payload_hash": new.payload_hash,
                "run_id": run_id,
                "disposition": disposition.value,
                "created_at": tx.now,
                "expires_at": tx.now + ttl,
            },
        )
    # A run inserted by this transaction is known without reading it back (it has no steps).
    if inserted is None:
        run = reads.load(tx.conn, run_id)
        return Created(run, disposition, tx.transition(run))
    if inserted["state"] != RunState.RUNNING.value:
        run = reads.to_run(inserted, [])
        return Created(run, disposition, tx.transition(run))
    # Answered as created (pending), and claimed as started: as if claimed after the INSERT.
    run = reads.to_run({**inserted, **_NOT_STARTED}, [])
    return Created(run, disposition, tx.transition(run), reads.to_run(inserted, []))


def _idempotent(tx: t.Tx, new: NewRun) -> Created | None:
    record = tx.conn.execute(_FIND_KEY, {"w_id": new.request_id}).mappings().first()
    if record is None:
        return None
    if record["expires_at"] <= tx.now:
        tx.conn.execute(_DELETE_KEY, {"w_id": new.request_id})
        return None
    if record["payload_hash"] != new.payload_hash:
        raise IdempotencyMismatch(new.request_id, record["run_id"])
    try:
        run = reads.load(tx.conn, record["run_id"])
    except RunNotFound:
        # Purged (retention shorter than the key's TTL): the key is free again.
        tx.conn.execute(_DELETE_KEY, {"w_id": new.request_id})
        return None
    return Created(run, Disposition.IDEMPOTENT, Transition(run=run))


def slot_holder(tx: t.Tx, key: str, slot: str) -> str | None:
    """The id of the run holding concurrency key `key`'s `slot`, locked."""
    # Locked (PostgreSQL): a trigger that queues behind the active run must wait for a
    # transaction finishing that run, or the finish promotes nothing and the queued run is
    # orphaned; after the wait the row no longer matches and the trigger takes the slot.
    result = tx.conn.execute(q.SLOT_HOLDER, {"w_key": key, "w_slot": slot})
    return result.scalar()


def _resolve_conflict(
    tx: t.Tx, new: NewRun, run_on: Claim | None
) -> tuple[str, Disposition, t.Row | None]:
    """The run the trigger resolves to, its disposition and, if inserted, its row."""
    # The common case first: the key is free and the run inserted, one statement. Else the
    # holder is read (locked), unless it finished meanwhile (PostgreSQL: the INSERT waited for
    # the finishing transaction's slot, the SELECT's snapshot is later).
    for _ in range(_FREED_RETRIES):
        row = _insert(tx, new, ACTIVE_SLOT, run_on)
        if row is not None:
            return row["id"], Disposition.CREATED, row
        active = slot_holder(tx, new.concurrency_key, ACTIVE_SLOT)
        if active is not None:
            return _behind(tx, new, active)
    raise IntegrityError("INSERT", {}, Exception("the active slot keeps changing hands"))


def _behind(tx: t.Tx, new: NewRun, active: str) -> tuple[str, Disposition, t.Row | None]:
    """The trigger met the active run `active` of its key."""
    if new.policy == "reject":
        raise RunConflict(new.concurrency_key, active)
    if new.policy == "join":
        return active, Disposition.JOINED, None
    queued = slot_holder(tx, new.concurrency_key, QUEUED_SLOT)
    if queued is not None:
        return queued, Disposition.JOINED, None
    row = _insert(tx, new, QUEUED_SLOT)
    if row is None:
        # Queued by a concurrent trigger after the read above (PostgreSQL): the next pass of
        # the caller's retry joins it.
        raise IntegrityError("INSERT", {}, Exception("the queued slot was taken"))
    return row["id"], Disposition.QUEUED, row


def _insert(tx: t.Tx, new: NewRun, slot: str, run_on: Claim | None = None) -> t.Row | None:
    """The new run's row in `slot` (running on `run_on`'s crawler if given), or None if another
    run holds the slot."""
    state = RunState.PENDING if slot == ACTIVE_SLOT else RunState.QUEUED
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
        "triggered_by": new.triggered_by,
        "cancelled_by": "",
        "retried_by": "",
    }
    # The run is written with its events' seqs already counted: one statement less than
    # inserting it with 0 and letting `t.append` bump it.
    created = {"state": state.value, "reason": "created"}
    started = [RunEvent(row["id"], 1, tx.now, 1, EventKind.STATE_CHANGED, created)]
    if run_on is not None:
        row.update(_started(run_on, tx.now))
        data = {"state": RunState.RUNNING.value, "reason": "dispatched", "worker": run_on.worker_id}
        started.append(RunEvent(row["id"], 2, tx.now, 1, EventKind.STATE_CHANGED, data))
    row["last_seq"] = len(started)
    if not q.insert_run_unless_taken(tx.conn, row):
        return None
    if new.labels:
        tx.conn.execute(
            _INSERT_LABEL,
            [{"run_id": row["id"], "key": k, "value": v} for k, v in new.labels.items()],
        )
    tx.unwritten += [reads.event_row(event) for event in started]
    tx.events += started
    tx.dispatchable = slot == ACTIVE_SLOT and run_on is None
    return row


#: A run's columns before its first attempt starts.
_NOT_STARTED = {
    "state": RunState.PENDING.value,
    "worker_id": "",
    "lease_expires_at": None,
    "started_at": None,
    "last_seq": 1,
}


def _started(run_on: Claim, now: datetime) -> dict[str, Any]:
    """The columns `t.start_attempt` sets on a run's first attempt."""
    return {
        "state": RunState.RUNNING.value,
        "worker_id": run_on.worker_id,
        "lease_expires_at": now + run_on.lease_ttl,
        "started_at": now,
    }


def claim_next(tx: t.Tx, worker_id: str, lease_ttl: timedelta) -> Run | None:
    """Start an attempt of the oldest dispatchable run on `worker_id` (None: nothing to do)."""
    # The whole row, locked by this one statement (FOR UPDATE SKIP LOCKED on PostgreSQL;
    # SQLite transactions hold the write lock): no second read to lock it.
    found = tx.conn.execute(q.NEXT_DISPATCHABLE, {"w_now": tx.now}).mappings().first()
    if found is None:
        return None
    return start(tx, dict(found), worker_id, lease_ttl)


def start(tx: t.Tx, row: t.Row, worker_id: str, lease_ttl: timedelta) -> Run:
    """Start an attempt of the dispatchable run `row` (locked) on `worker_id`."""
    # Read before `start_attempt` sets started_at: a run never started has no steps to read.
    run = reads.with_steps(tx.conn, row)
    t.start_attempt(tx, row, worker_id, lease_ttl)
    # `start_attempt` keeps `row` up to date.
    return reads.to_run(row, list(run.steps))
