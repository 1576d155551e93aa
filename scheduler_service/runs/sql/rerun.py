"""RetryRun inside an open transaction: a failed run pending again as a new attempt; a failed
fan-out parent running again with its failed and cancelled children retried; a retried child
reopening its ended parent."""

from __future__ import annotations

from datetime import datetime, timedelta

from common.jobs.fanout import CHILDREN_STEP
from scheduler_service.db.models import ACTIVE_SLOT, WAITING_SLOT
from scheduler_service.errors import RunConflict, RunNotFound, RunNotRetryable
from scheduler_service.runs.model import EventKind, RunState, StepState
from scheduler_service.runs.sql import creation, fanout
from scheduler_service.runs.sql import transitions as t

Row = t.Row
_ENDED_CHILDREN = (RunState.FAILED.value, RunState.CANCELLED.value)


def retry(tx: t.Tx, run_id: str, by: str) -> Row:
    """Retry the failed run `run_id` (see `RunStore.retry_run`); returns its row."""
    row = t.lock_run(tx, run_id)
    if row is None:
        raise RunNotFound(run_id)
    if row["state"] != RunState.FAILED.value:
        raise RunNotRetryable(run_id, row["state"])
    active = creation.slot_holder(tx, row["concurrency_key"], ACTIVE_SLOT)
    if active is not None:
        raise RunConflict(row["concurrency_key"], active)
    if row["children_total"]:
        _retry_parent(tx, row, by)
        return row
    _again(tx, row, by, ACTIVE_SLOT)
    if row["parent_run_id"]:
        _reopen_parent(tx, row["parent_run_id"], 1)
    return row


def _again(tx: t.Tx, row: Row, by: str, slot: str) -> None:
    """The run pending (or waiting behind its key's active run) as a new attempt."""
    state = RunState.PENDING if slot == ACTIVE_SLOT else RunState.QUEUED
    t.set_run(
        tx,
        row,
        state=state.value,
        slot=slot,
        attempt=row["attempt"] + 1,
        attempt_floor=row["attempt"],
        finished_at=None,
        not_before=None,
        error=None,
        cancel_requested_at=None,
        retried_by=by,
        # A fresh deadline as long as the first: a run that failed past its deadline would
        # otherwise never be dispatched and fail again at the next sweep.
        deadline_at=_fresh_deadline(row, tx.now),
    )
    t.append(tx, row, EventKind.STATE_CHANGED, {"state": state.value, "reason": "retry requested"})
    tx.dispatchable = tx.dispatchable or slot == ACTIVE_SLOT


def _retry_parent(tx: t.Tx, parent: Row, by: str) -> None:
    ended = fanout.children(tx.conn, parent["id"], _ENDED_CHILDREN)
    _running_again(tx, parent, len(ended), by)
    for child_id in [row["id"] for row in ended]:
        child = t.lock_run(tx, child_id)
        if child is None or child["state"] not in _ENDED_CHILDREN:
            continue
        held = creation.slot_holder(tx, child["concurrency_key"], ACTIVE_SLOT)
        _again(tx, child, by, WAITING_SLOT if held is not None else ACTIVE_SLOT)


def _reopen_parent(tx: t.Tx, parent_id: str, count: int) -> None:
    """A child of `parent_id` runs again: an ended parent follows its children again."""
    parent = t.lock_run(tx, parent_id)
    if parent is None or not RunState(parent["state"]).terminal:
        if parent is not None and fanout.is_parent(parent):
            t.set_run(tx, parent, children_done=parent["children_done"] - count)
        return
    _running_again(tx, parent, count, parent["retried_by"])


def _running_again(tx: t.Tx, parent: Row, count: int, by: str) -> None:
    held = creation.slot_holder(tx, parent["concurrency_key"], ACTIVE_SLOT)
    t.change(
        tx,
        parent,
        {"state": RunState.RUNNING.value, "reason": f"retrying {count} repositories"},
        state=RunState.RUNNING.value,
        slot=ACTIVE_SLOT if held is None else None,
        finished_at=None,
        error=None,
        output=None,
        cancel_requested_at=None,
        retried_by=by,
        children_done=max(parent["children_done"] - count, 0),
    )
    t.upsert_step(
        tx,
        parent,
        CHILDREN_STEP,
        state=StepState.RUNNING.value,
        current=parent["children_done"],
        finished_at=None,
        message=f"retrying {count} repositories",
    )


def _fresh_deadline(row: Row, now: datetime) -> datetime | None:
    if row["deadline_at"] is None:
        return None
    allowed: timedelta = row["deadline_at"] - row["created_at"]
    return now + allowed
