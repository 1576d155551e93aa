"""Creating a batch of runs in one transaction (a schedule tick's runs, `RunStore.create_runs`).

The common case costs a handful of statements for the whole batch, not several per run: the
request ids are read in one statement and written in one (`creation.Keys`), and the runs whose
concurrency key is free are inserted in one multi-row `INSERT … ON CONFLICT DO NOTHING`; only a
trigger meeting an active run (or an idempotent repeat) takes the one-run path of `creation`.
A database error (PostgreSQL: a race lost to another process on a key or a request id) aborts
the transaction; the store then runs the batch again `isolated`: each trigger alone, in a
savepoint, retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from common.errors import GhpulseError, Unavailable
from scheduler_service.db.models import ACTIVE_SLOT
from scheduler_service.runs.model import NewRun, RunEvent
from scheduler_service.runs.sql import creation
from scheduler_service.runs.sql import statements as q
from scheduler_service.runs.sql import transitions as t
from scheduler_service.runs.store import Created, Transition

#: Passes over a trigger whose savepoint the database refused, when isolated.
_RETRIES = 3
_CONTENDED = timedelta(seconds=1)
Fresh = tuple[t.Row, RunEvent]


def create_many(
    tx: t.Tx, news: Sequence[NewRun], ttl: timedelta, *, isolated: bool
) -> list[Created | GhpulseError]:
    """`creation.create` for each of `news` in the one transaction (see the module docstring):
    per trigger its result, or the error it alone was refused with (a conflict, an idempotency
    mismatch: refusals write nothing that matters)."""
    results: list[Created | GhpulseError] = []
    dispatchable = False
    keys = None if isolated else creation.Keys.prefetch(tx, news)
    fresh = {} if keys is None else _insert_fresh(tx, news, keys)
    for index, new in enumerate(news):
        if keys is None:
            results.append(_create_alone(tx, new, ttl))
        else:
            results.append(_create_one(tx, new, ttl, keys, fresh.get(index)))
        dispatchable = dispatchable or tx.dispatchable
    if keys is not None:
        keys.write(tx)
    tx.dispatchable = dispatchable
    return results


def _insert_fresh(tx: t.Tx, news: Sequence[NewRun], keys: creation.Keys) -> dict[int, Fresh]:
    """Insert at once the runs of triggers with no stored request id whose concurrency key no
    earlier trigger of the batch names; by index, those the database took (the others' keys are
    held: they go the one-run path)."""
    candidates: dict[int, Fresh] = {}
    named: set[str] = set()
    for index, new in enumerate(news):
        first = new.concurrency_key not in named
        named.add(new.concurrency_key)
        if first and not (new.request_id and new.request_id in keys.known):
            candidates[index] = creation.run_row(tx, new, ACTIVE_SLOT)
    if not candidates:
        return {}
    taken = q.insert_runs_unless_taken(tx.conn, [row for row, _ in candidates.values()])
    return {index: fresh for index, fresh in candidates.items() if fresh[0]["id"] in taken}


def _create_one(
    tx: t.Tx, new: NewRun, ttl: timedelta, keys: creation.Keys | None, fresh: Fresh | None
) -> Created | GhpulseError:
    """One trigger of a batch; its transition holds only its own events."""
    events, unwritten = len(tx.events), len(tx.unwritten)
    tx.dispatchable = False
    try:
        if fresh is not None and keys is not None:
            created = creation.create_inserted(tx, new, ttl, keys, fresh)
        else:
            created = creation.create(tx, new, ttl, keys)
    except GhpulseError as exc:
        del tx.events[events:], tx.unwritten[unwritten:]
        tx.dispatchable = False
        return exc
    transition = Transition(created.run, tx.events[events:], dispatchable=tx.dispatchable)
    return replace(created, transition=transition)


def _create_alone(tx: t.Tx, new: NewRun, ttl: timedelta) -> Created | GhpulseError:
    """`_create_one` in a savepoint, retried when the database refuses it."""
    for _ in range(_RETRIES):
        events, unwritten = len(tx.events), len(tx.unwritten)
        try:
            with tx.conn.begin_nested():
                return _create_one(tx, new, ttl, None, None)
        except IntegrityError:
            del tx.events[events:], tx.unwritten[unwritten:]
            tx.dispatchable = False
    return Unavailable("too much contention creating the run; retry", retry_after=_CONTENDED)
