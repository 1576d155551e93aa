"""Fan-out inside an open transaction (the model: `common.jobs.fanout`): a parent expanded into
its children, and a parent following its children.

The transitions only note what fan-out has to do (`Tx.expand`, `Tx.ended_children`,
`Tx.child_steps`); `settle` does it before the transaction commits (and before a claim reads
what is dispatchable). Locks are always taken child first, then parent: a child's transaction
locks its parent, never the other way round (cancelling a parent cancels each child in a
transaction of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError

from common.jobs import JobKind, from_json
from common.jobs.fanout import CHILDREN_STEP, child_key, child_spec, sum_outputs
from scheduler_service.db.models import ACTIVE_SLOT, WAITING_SLOT
from scheduler_service.runs.model import (
    ConflictPolicy,
    EventKind,
    NewRun,
    RunError,
    RunState,
    StepState,
    Trigger,
)
from scheduler_service.runs.sql import creation
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.sql.reads import ACTIVE_STATES

runs = t.runs
Row = t.Row
RUNNING = RunState.RUNNING.value
_CHILDREN = (
    select(runs.c.id, runs.c.state, runs.c.job, runs.c.output, runs.c.error)
    .where(runs.c.parent_run_id == bindparam("w_parent"))
    .order_by(runs.c.created_at, runs.c.id)
)
#: Pass over a key's active slot freed between the INSERT and the read of its holder.
_FREED_RETRIES = 3


def settle(tx: t.Tx) -> None:
    """Do the fan-out work the transaction's transitions noted, until none is left."""
    while tx.child_steps or tx.ended_children or tx.expand:
        if tx.child_steps:
            steps, tx.child_steps = tx.child_steps, []
            _children_stepped(tx, steps)
        elif tx.ended_children:
            _child_ended(tx, tx.ended_children.pop(0))
        else:
            row, repositories = tx.expand.pop(0)
            expand(tx, row, repositories)


def is_parent(row: Row) -> bool:
    """Whether `row` is a fanned-out parent following its children (running, no crawler)."""
    return bool(row["state"] == RUNNING and not row["worker_id"])


def children(conn: Connection, parent_id: str, states: Sequence[str] = ()) -> list[Row]:
    """The parent's children in creation order (id, state, job, output, error), maybe only
    those in `states`."""
    rows = [dict(r) for r in conn.execute(_CHILDREN, {"w_parent": parent_id}).mappings()]
    return [row for row in rows if not states or row["state"] in states]


def active_children(conn: Connection, parent_id: str) -> list[str]:
    return [row["id"] for row in children(conn, parent_id, ACTIVE_STATES)]


def repository(row: Row) -> str:
    """The one repository of a child run."""
    names = row["job"].get("repositories") or [""]
    return str(names[0])


def expand(tx: t.Tx, parent: Row, repositories: list[str] | None) -> None:
    """Create the parent's children, one per repository (the job's own list when None), and
    make it a RUNNING parent that no crawler holds."""
    spec = from_json(parent["job_kind"], parent["job"])
    own: list[str] = list(getattr(spec, "repositories", ()))
    names = list(dict.fromkeys(repositories if repositories is not None else own))
    for name in names:
        _insert_child(tx, parent, name)
    total = len(names)
    message = f"0 of {total} repositories"
    t.change(
        tx,
        parent,
        {"state": RUNNING, "reason": f"fanned out to {total} runs", "children": total},
        state=RUNNING,
        worker_id="",
        lease_expires_at=None,
        not_before=None,
        # The children carry the deadline; the parent ends with its last child.
        deadline_at=None,
        started_at=parent["started_at"] or tx.now,
        children_total=total,
        children_done=0,
    )
    t.upsert_step(
        tx,
        parent,
        CHILDREN_STEP,
        state=StepState.RUNNING.value,
        current=0,
        total=total,
        message=message,
        attempt=parent["attempt"],
        started_at=tx.now,
        finished_at=None,
        output=None,
    )
    data = {"step": CHILDREN_STEP, "total": total, "message": message}
    t.append(tx, parent, EventKind.STEP_STARTED, data)
    if total == 0:
        _finish_parent(tx, parent)


def _insert_child(tx: t.Tx, parent: Row, name: str) -> Row:
    spec = from_json(parent["job_kind"], parent["job"])
    new = NewRun(
        spec=child_spec(spec, name),
        concurrency_key=child_key(spec, name),
        policy=ConflictPolicy.QUEUE,
        max_attempts=parent["max_attempts"],
        labels=dict(parent["labels"] or {}),
        trigger=Trigger(parent["trigger"]),
        deadline_at=parent["deadline_at"],
        schedule_id=parent["schedule_id"],
        nominal_time=parent["nominal_time"],
        triggered_by=parent["triggered_by"],
    )
    for _ in range(_FREED_RETRIES):
        row = creation.insert(tx, new, ACTIVE_SLOT, parent["id"])
        if row is not None:
            return row
        # Locked, as a trigger that queues does: the holder's finish then sees this child.
        if creation.slot_holder(tx, new.concurrency_key, ACTIVE_SLOT) is not None:
            waiting = creation.insert(tx, new, WAITING_SLOT, parent["id"])
            assert waiting is not None, "the waiting slot is not unique"
            return waiting
    raise IntegrityError("INSERT", {}, Exception("the active slot keeps changing hands"))


def _parent_of(tx: t.Tx, child: Row) -> Row | None:
    """The child's parent, locked, if it still follows its children."""
    parent_id = child["parent_run_id"]
    # The same run's row as this transaction already changed it (its last seq is ahead).
    parent = tx.behind.get(parent_id) or t.lock_run(tx, parent_id)
    return parent if parent is not None and is_parent(parent) else None


def _progress(tx: t.Tx, parent: Row, child: Row, what: str, **values: Any) -> None:
    name = repository(child)
    data = {
        "step": CHILDREN_STEP,
        "current": parent["children_done"],
        "total": parent["children_total"],
        "message": f"{name}: {what}",
        "repository": name,
        "child_run_id": child["id"],
    }
    t.append(tx, parent, EventKind.STEP_PROGRESS, data)
    if values:
        t.upsert_step(tx, parent, CHILDREN_STEP, message=data["message"], **values)


def _children_stepped(tx: t.Tx, steps: list[tuple[Row, str]]) -> None:
    """Log the children's step starts on their parents (the parents' last seqs are written when
    the transaction flushes)."""
    for child, step in steps:
        parent = _parent_of(tx, child)
        if parent is not None:
            _progress(tx, parent, child, step)


def _child_ended(tx: t.Tx, child: Row) -> None:
    parent = _parent_of(tx, child)
    if parent is None:
        return
    done = parent["children_done"] + 1
    t.set_run(tx, parent, children_done=done)
    _progress(tx, parent, child, child["state"], current=done)
    if done >= parent["children_total"]:
        _finish_parent(tx, parent)


def _finish_parent(tx: t.Tx, parent: Row) -> None:
    """End the parent after its last child: its output sums theirs."""
    rows = children(tx.conn, parent["id"])
    succeeded = [row for row in rows if row["state"] == RunState.SUCCEEDED.value]
    failed = [_failure(row) for row in rows if row["state"] != RunState.SUCCEEDED.value]
    output = sum_outputs(row["output"] or {} for row in succeeded)
    if parent["job_kind"] == JobKind.CRAWL.value:
        # The shape of a single crawl's failed repositories, which clients already read.
        output["failed_repositories"] = [
            *output.get("failed_repositories", []),
            *({k: f[k] for k in ("repository", "code", "error")} for f in failed),
        ]
    output["children"] = {"total": len(rows), "succeeded": len(succeeded), "failed": failed}
    error = None
    if parent["cancel_requested_at"] is not None:
        state, reason = RunState.CANCELLED, "cancelled"
    elif failed and (not succeeded or any(f["code"] != REFUSED_BY_GITHUB for f in failed)):
        state, reason = RunState.FAILED, "some repositories failed"
        error = RunError("CHILDREN_FAILED", _failed_message(failed, len(rows)), False)
    else:
        state, reason = RunState.SUCCEEDED, "succeeded"
    step_state = StepState.SUCCEEDED if state is RunState.SUCCEEDED else StepState.FAILED
    message = f"{len(succeeded)} of {len(rows)} repositories succeeded"
    t.upsert_step(
        tx, parent, CHILDREN_STEP, state=step_state.value, finished_at=tx.now, message=message
    )
    data = {"step": CHILDREN_STEP, "state": step_state.value, "message": message}
    t.append(tx, parent, EventKind.STEP_FINISHED, data)
    t.finish(tx, parent, state, reason, output=output, error=error)


#: A child's code when GitHub refused its repository for good (not found, archived, no access):
#: as in a single run over several repositories, that repository is listed in the output's
#: `failed_repositories` and the others' success is the run's, unless none succeeded.
REFUSED_BY_GITHUB = "ALL_REPOSITORIES_FAILED"


def _failure(row: Row) -> dict[str, Any]:
    error = RunError.from_json(row["error"])
    return {
        "repository": repository(row),
        "run_id": row["id"],
        "state": row["state"],
        "code": error.code if error else row["state"].upper(),
        "error": error.message if error else row["state"],
    }


def _failed_message(failed: list[dict[str, Any]], total: int) -> str:
    shown = "; ".join(f"{f['repository']} ({f['code']}: {f['error']})" for f in failed[:10])
    more = f"; and {len(failed) - 10} more" if len(failed) > 10 else ""
    return f"{len(failed)} of {total} repositories did not succeed: {shown}{more}"
