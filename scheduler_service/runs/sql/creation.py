"""Creating a run inside an open transaction: the request-id key, the conflict policy against the
concurrency key's slots, and the new run's rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.exc import IntegrityError

from common.jobs import to_json
from common.jobs.fanout import fans_out, needs_plan
from scheduler_service.db.models import ACTIVE_SLOT, QUEUED_SLOT, IdempotencyRow, RunLabelRow
from scheduler_service.errors import IdempotencyMismatch, RunConflict, RunNotFound
from scheduler_service.runs.model import (
    Disposition,
    EventKind,
    NewRun,
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


@dataclass
class Keys:
    """A batch's request ids, read in one statement before it (`prefetch`) and written in one
    after it (`write`), instead of a read and a write per trigger."""

    #: The stored record of each request id of the batch (absent: none stored).
    known: dict[str, dict[str, Any]] = field(default_factory=dict)
    unwritten: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def prefetch(cls, tx: t.Tx, news: Sequence[NewRun]) -> Keys:
        ids = sorted({new.request_id for new in news if new.request_id})
        if not ids:
            return cls()
        rows = tx.conn.execute(select(idempotency).where(idempotency.c.request_id.in_(ids)))
        return cls({row["request_id"]: dict(row) for row in rows.mappings()})

    def write(self, tx: t.Tx) -> None:
        if self.unwritten:
            tx.conn.execute(_INSERT_KEY, self.unwritten)
            self.unwritten = []


def create(
    tx: t.Tx,
    new: NewRun,
    ttl: timedelta,
    keys: Keys | None = None,
    run_on: Claim | None = None,
) -> Created:
    """The run `new` resolves to (see `RunStore.create_run`), its request id recorded for `ttl`
    (with `keys`, looked up and recorded there, see `Keys`); with `run_on`, a run it creates is
    inserted running on that crawler (`Created.claimed`), unless it is a fan-out parent (never
    dispatched itself)."""
    if new.request_id:
        previous = _idempotent(tx, new, keys)
        if previous is not None:
            return previous
    if is_expanded_parent(new):
        run_on = None
    run_id, disposition, inserted = _resolve_conflict(tx, new, run_on)
    _expand_if_parent(tx, new, inserted)
    _record_key(tx, new, ttl, keys, run_id, disposition)
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


def create_inserted(
    tx: t.Tx, new: NewRun, ttl: timedelta, keys: Keys, inserted: tuple[t.Row, RunEvent]
) -> Created:
    """`create` of a trigger whose run was inserted already (see `run_row`; `group.create_many`)."""
    row, event = inserted
    _after_insert(tx, new, row, [event])
    _expand_if_parent(tx, new, row)
    _record_key(tx, new, ttl, keys, row["id"], Disposition.CREATED)
    run = reads.to_run(row, [])
    return Created(run, Disposition.CREATED, tx.transition(run))


def is_expanded_parent(new: NewRun) -> bool:
    """Whether `new` fans out into children listed by its own job (an organization's parent is
    dispatched once, for its crawler's plan)."""
    return fans_out(new.spec) and not needs_plan(new.spec)


def _expand_if_parent(tx: t.Tx, new: NewRun, inserted: t.Row | None) -> None:
    """A fan-out parent that took its key's active slot gets its children before the commit
    (`fanout.settle`); an organization's parent waits for its crawler's plan instead."""
    if is_expanded_parent(new) and inserted is not None and inserted["slot"] == ACTIVE_SLOT:
        tx.expand.append((inserted, None))


def _record_key(
    tx: t.Tx,
    new: NewRun,
    ttl: timedelta,
    keys: Keys | None,
    run_id: str,
    disposition: Disposition,
) -> None:
    if not new.request_id:
        return
    record = {
        "request_id": new.request_id,
        "payload_hash": new.payload_hash,
        "run_id": run_id,
        "disposition": disposition.value,
        "created_at": tx.now,
        "expires_at": tx.now + ttl,
    }
    if keys is None:
        tx.conn.execute(_INSERT_KEY, record)
    else:
        keys.unwritten.append(record)
        keys.known[new.request_id] = record


def _idempotent(tx: t.Tx, new: NewRun, keys: Keys | None) -> Created | None:
    record: Mapping[Any, Any] | None
    if keys is None:
        record = tx.conn.execute(_FIND_KEY, {"w_id": new.request_id}).mappings().first()
    else:
        record = keys.known.get(new.request_id)
    if record is None:
        return None
    if record["expires_at"] <= tx.now:
        _forget(tx, new.request_id, keys)
        return None
    if record["payload_hash"] != new.payload_hash:
        raise IdempotencyMismatch(new.request_id, record["run_id"])
    try:
        run = reads.load(tx.conn, record["run_id"])
    except RunNotFound:
        # Purged (retention shorter than the key's TTL): the key is free again.
        _forget(tx, new.request_id, keys)
        return None
    return Created(run, Disposition.IDEMPOTENT, Transition(run=run))


def _forget(tx: t.Tx, request_id: str, keys: Keys | None) -> None:
    tx.conn.execute(_DELETE_KEY, {"w_id": request_id})
    if keys is not None:
        keys.known.pop(request_id, None)


def slot_holder(tx: t.Tx, key: str, slot: str) -> str | None:
    """The id of the run holding concurrency key `key`'s `slot`, locked."""
    # Locked (PostgreSQL): a trigger that queues behind the active run must wait for a
    # transaction finishing that run, or the finish promotes nothing and the queued run is
    # orphaned; after the wait the row no longer matches and the trigger takes the slot.
    row = q.SLOT_HOLDER.first(tx.conn, {"w_key": key, "w_slot": slot})
    return None if row is None else str(row["id"])


def _resolve_conflict(
    tx: t.Tx, new: NewRun, run_on: Claim | None
) -> tuple[str, Disposition, t.Row | None]:
    """The run the trigger resolves to, its disposition and, if inserted, its row."""
    # The common case first: the key is free and the run inserted, one statement. Else the
    # holder is read (locked), unless it finished meanwhile (PostgreSQL: the INSERT waited for
    # the finishing transaction's slot, the SELECT's snapshot is later).
    for _ in range(_FREED_RETRIES):
        row = insert(tx, new, ACTIVE_SLOT, run_on=run_on)
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
    row = insert(tx, new, QUEUED_SLOT)
    if row is None:
        # Queued by a concurrent trigger after the read above (PostgreSQL): the next pass of
        # the caller's retry joins it.
        raise IntegrityError("INSERT", {}, Exception("the queued slot was taken"))
    return row["id"], Disposition.QUEUED, row


def insert(
    tx: t.Tx,
    new: NewRun,
    slot: str,
    parent_run_id: str | None = None,
    run_on: Claim | None = None,
) -> t.Row | None:
    """The new run's row in `slot` (running on `run_on`'s crawler if given), or None if another
    run holds the slot."""
    row, event = run_row(tx, new, slot, parent_run_id)
    written = [event]
    if run_on is not None:
        # The run is written with its events' seqs already counted, its attempt started.
        row.update(_started(run_on, tx.now))
        data = {"state": RunState.RUNNING.value, "reason": "dispatched", "worker": run_on.worker_id}
        written.append(RunEvent(row["id"], 2, tx.now, 1, EventKind.STATE_CHANGED, data))
        row["last_seq"] = len(written)
    if not q.insert_run_unless_taken(tx.conn, row):
        return None
    _after_insert(tx, new, row, written)
    return row


def run_row(
    tx: t.Tx, new: NewRun, slot: str, parent_run_id: str | None = None
) -> tuple[t.Row, RunEvent]:
    """The row of a new run in `slot` (not inserted yet), and its first event."""
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
        "parent_run_id": parent_run_id,
        "children_total": 0,
        "children_done": 0,
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
    return row, event


def _after_insert(tx: t.Tx, new: NewRun, row: t.Row, written: list[RunEvent]) -> None:
    """What follows the insertion of run `row`: its labels, its first events."""
    if new.labels:
        tx.conn.execute(
            _INSERT_LABEL,
            [{"run_id": row["id"], "key": k, "value": v} for k, v in new.labels.items()],
        )
    tx.unwritten += [reads.event_row(event) for event in written]
    tx.events += written
    waits = row["slot"] == ACTIVE_SLOT and row["state"] != RunState.RUNNING.value
    tx.dispatchable = tx.dispatchable or waits


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
