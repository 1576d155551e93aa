"""A trigger's transaction, claim included: creating the run (its children too if it fans out),
and starting the oldest dispatchable run on the crawler whose slot the trigger may fill."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from scheduler_service.runs.model import AttemptRef, AttemptResult, NewRun, Run, StepReport
from scheduler_service.runs.sql import creation, fanout, reads
from scheduler_service.runs.sql import statements as q
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.store import Claim, Created, Transition


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
        return expanded(tx, creation.create(tx, trigger.new, trigger.ttl))
    if creation.is_expanded_parent(trigger.new):
        # A parent is never dispatched: its children are, once inserted.
        created = expanded(tx, creation.create(tx, trigger.new, trigger.ttl))
        if not tx.dispatchable:
            return created
        claimed = claim_next(tx, claim.worker_id, claim.lease_ttl)
        return replace(created, transition=tx.transition(created.run), claimed=claimed)
    # The claim looks first: with nothing older dispatchable, a new run is inserted already
    # running on the claiming crawler (one INSERT instead of an INSERT, a claim and an UPDATE).
    # An older run is started only once the trigger's own outcome is known (a refusal writes
    # nothing).
    older = q.next_dispatchable(tx.conn).first(tx.conn, {"w_now": tx.now})
    created = creation.create(tx, trigger.new, trigger.ttl, run_on=None if older else claim)
    if older is None:
        return created
    claimed = start(tx, older, claim.worker_id, claim.lease_ttl)
    return replace(created, transition=tx.transition(created.run), claimed=claimed)


def expanded(tx: t.Tx, created: Created) -> Created:
    """`created`, with its children if it is a parent created by this transaction."""
    if not tx.expand:
        return created
    fanout.settle(tx)
    run = reads.load(tx.conn, created.run.id)
    return replace(created, run=run, transition=tx.transition(run))


def claim_next(tx: t.Tx, worker_id: str, lease_ttl: timedelta) -> Run | None:
    """Start an attempt of the oldest dispatchable run on `worker_id` (None: nothing to do)."""
    # The whole row, locked by this one statement (FOR UPDATE SKIP LOCKED on PostgreSQL;
    # SQLite transactions hold the write lock): no second read to lock it.
    # A parent promoted by this transaction has its children before anything is claimed.
    fanout.settle(tx)
    found = q.next_dispatchable(tx.conn).first(tx.conn, {"w_now": tx.now})
    if found is None:
        return None
    return start(tx, found, worker_id, lease_ttl)


def start(tx: t.Tx, row: t.Row, worker_id: str, lease_ttl: timedelta) -> Run:
    """Start an attempt of the dispatchable run `row` (locked) on `worker_id`."""
    # Read before `start_attempt` sets started_at: a run never started has no steps to read.
    run = reads.with_steps(tx.conn, row)
    t.start_attempt(tx, row, worker_id, lease_ttl)
    # `start_attempt` keeps `row` up to date.
    return reads.to_run(row, list(run.steps))


def claim(worker_id: str, lease_ttl: timedelta, tx: t.Tx) -> Transition:
    """`RunStore.claim` inside the open transaction `tx`."""
    return tx.transition(claim_next(tx, worker_id, lease_ttl))


def record_steps(
    ref: AttemptRef, worker_id: str, reports: Sequence[StepReport], tx: t.Tx
) -> Transition:
    """`RunStore.record_steps` inside the open transaction `tx`."""
    t.apply_reports(tx, ref, worker_id, reports)
    return tx.transition()


def finish_and_claim(
    ref: AttemptRef,
    worker_id: str,
    result: AttemptResult,
    claim: Claim | None,
    reports: Sequence[StepReport],
    tx: t.Tx,
) -> Transition:
    """`RunStore.finish_attempt` inside the open transaction `tx`: the attempt's last step
    reports, its result, and the claim of the next run for the slot it frees."""
    row = t.apply_reports(tx, ref, worker_id, reports)
    t.apply_result(tx, row, result)
    fanout.settle(tx)
    run = reads.run_of(tx, row)
    if claim is None:
        return tx.transition(run)
    claimed = claim_next(tx, claim.worker_id, claim.lease_ttl)
    transition = tx.transition(run)
    transition.claimed = claimed
    return transition
