"""The run store's hot-path statements, built once at import.

A statement object built per call costs Python time on every transaction (construction and its
cache key); built once, SQLAlchemy memoizes its cache key and finds the compiled form at once.
Values come as bound parameters. The `w_` parameters name WHERE values, never a column, so an
UPDATE's SET columns are whatever other keys the parameters carry. The ones run in every run's
transactions are `Prepared` (executed on the DBAPI cursor, see `prepared`); `.statement` is the
Core statement.
"""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Insert,
    Table,
    TextualSelect,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from common.db import UTCDateTime
from common.prepared import Prepared
from scheduler_service.db.models import (
    QUEUED_SLOT,
    WAITING_SLOT,
    RunEventRow,
    RunRow,
    RunStepRow,
)
from scheduler_service.runs.model import RunState

runs = cast(Table, RunRow.__table__)
steps = cast(Table, RunStepRow.__table__)
events = cast(Table, RunEventRow.__table__)

PENDING, RUNNING = RunState.PENDING.value, RunState.RUNNING.value

#: The run's row, locked for the rest of the transaction. Parameters: w_id.
LOCK_RUN = Prepared(select(runs).where(runs.c.id == bindparam("w_id")).with_for_update())
#: The run's row. Parameters: w_id.
LOAD_RUN = Prepared(select(runs).where(runs.c.id == bindparam("w_id")))
#: SET the columns given as parameters on the run w_id.
UPDATE_RUN = Prepared(update(runs).where(runs.c.id == bindparam("w_id")))
INSERT_EVENT = Prepared(events.insert())
#: PostgreSQL: a transaction's events inserted and its wake-up sent in one round trip (a
#: data-modifying CTE runs whether or not the query reads it). Parameters: one array per column
#: (see `events_notifying`), channel, payload.
INSERT_EVENTS_NOTIFYING = Prepared(
    text(
        "WITH appended AS (INSERT INTO run_events (run_id, seq, time, attempt, kind, data)"
        " SELECT * FROM unnest(CAST(:run_id AS varchar[]), CAST(:seq AS integer[]),"
        " CAST(:time AS timestamptz[]), CAST(:attempt AS integer[]), CAST(:kind AS varchar[]),"
        " CAST(:data AS jsonb[])))"
        " SELECT pg_notify(:channel, :payload)"
    )
)

#: The id of the run holding a key's slot, locked. Parameters: w_key, w_slot.
SLOT_HOLDER = Prepared(
    select(runs.c.id)
    .where(runs.c.concurrency_key == bindparam("w_key"), runs.c.slot == bindparam("w_slot"))
    .with_for_update()
)
#: The key's oldest queued or waiting run (a fan-out child), locked. Parameters: w_key.
QUEUED_OF = Prepared(
    select(runs)
    .where(
        runs.c.concurrency_key == bindparam("w_key"),
        # Constants in the SQL: a list of values would be an expanding parameter.
        runs.c.slot.in_([literal_column(f"'{slot}'") for slot in (QUEUED_SLOT, WAITING_SLOT)]),
    )
    .order_by(runs.c.created_at, runs.c.id)
    .limit(1)
    .with_for_update()
)
#: The oldest dispatchable run, locked, skipping rows another transaction holds. Parameters: w_now.
#: The state is a constant in the SQL, not a bound parameter: the planner proves the partial index
#: `ix_runs_dispatchable` (`state = 'pending'`) only from constants (see reads.state_is).
NEXT_DISPATCHABLE = (
    select(runs)
    .where(
        runs.c.state == literal_column(f"'{PENDING}'"),
        or_(runs.c.not_before.is_(None), runs.c.not_before <= bindparam("w_now")),
        or_(runs.c.deadline_at.is_(None), runs.c.deadline_at > bindparam("w_now")),
    )
    .order_by(runs.c.created_at, runs.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_RUN_COLUMNS = ", ".join(f'"{column.name}"' for column in runs.c)
_NOW = bindparam("w_now", type_=UTCDateTime())
#: `NEXT_DISPATCHABLE` as the claims run it: in the order of `ix_runs_dispatchable` whatever the
#: statistics say (a sort of every pending run makes each claim cost O(backlog), see migration
#: 0008). SQLite is told the index; PostgreSQL runs the query in `ghpulse_next_dispatchable`,
#: planned with sorts disabled.
NEXT_DISPATCHABLE_SQLITE = Prepared(
    text(
        f"SELECT {_RUN_COLUMNS} FROM runs INDEXED BY ix_runs_dispatchable"
        f" WHERE state = '{PENDING}' AND (not_before IS NULL OR not_before <= :w_now)"
        " AND (deadline_at IS NULL OR deadline_at > :w_now) ORDER BY created_at, id LIMIT 1"
    )
    .bindparams(_NOW)
    .columns(*runs.c)
)
NEXT_DISPATCHABLE_PG = Prepared(
    text(f"SELECT {_RUN_COLUMNS} FROM ghpulse_next_dispatchable(:w_now)")
    .bindparams(_NOW)
    .columns(*runs.c)
)


def next_dispatchable(conn: Connection) -> Prepared[TextualSelect]:
    """The claims' `NEXT_DISPATCHABLE` for `conn`'s database."""
    return NEXT_DISPATCHABLE_PG if conn.dialect.name == "postgresql" else NEXT_DISPATCHABLE_SQLITE


#: The run's steps in order. Parameters: w_run.
STEPS_OF_RUN = Prepared(
    select(steps).where(steps.c.run_id == bindparam("w_run")).order_by(steps.c.position)
)
#: Steps of several runs in order. Parameters: w_ids (a list).
STEPS_OF = (
    select(steps)
    .where(steps.c.run_id.in_(bindparam("w_ids", expanding=True)))
    .order_by(steps.c.run_id, steps.c.position)
)
#: SET the columns given as parameters on step (w_run, w_name).
UPDATE_STEP = Prepared(
    update(steps).where(steps.c.run_id == bindparam("w_run"), steps.c.name == bindparam("w_name"))
)
#: The run's row if attempt w_attempt is running on w_worker (the fencing check), locked, its
#: last_seq advanced by w_events (the events the transaction appends). Parameters: w_id,
#: w_attempt, w_worker, w_events.
FENCED_SEQS = Prepared(
    update(runs)
    .where(
        runs.c.id == bindparam("w_id"),
        runs.c.attempt == bindparam("w_attempt"),
        runs.c.state == RUNNING,
        runs.c.worker_id == bindparam("w_worker"),
    )
    .values(last_seq=runs.c.last_seq + bindparam("w_events"))
    .returning(*runs.c)
)
#: Extend a lease still held. Parameters: w_id, w_attempt, w_worker, lease_expires_at.
RENEW = Prepared(
    update(runs).where(
        runs.c.id == bindparam("w_id"),
        runs.c.attempt == bindparam("w_attempt"),
        runs.c.state == RUNNING,
        runs.c.worker_id == bindparam("w_worker"),
    )
)


def _insert_unless_taken(insert: Any) -> Insert:
    # No conflict target: the only unique constraint a new run can hit is its key's slot (its id
    # is fresh), a partial index PostgreSQL could not name as a target anyway.
    return cast(Insert, insert(runs).on_conflict_do_nothing().returning(runs.c.id))


_DIALECT_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_NEXT_POSITION = (
    select(func.coalesce(func.max(steps.c.position) + 1, 0))
    .where(steps.c.run_id == bindparam("w_run"))
    .scalar_subquery()
)
_UPSERT_STEP: dict[tuple[str, frozenset[str]], Prepared[Insert]] = {}


def upsert_step(
    conn: Connection, run_id: str, name: str, new: dict[str, Any], values: dict[str, Any]
) -> None:
    """Set `values` on step `name` of the run, or insert it (after the run's last step, with
    `new` as defaults for what `values` leaves out), in one statement."""
    key = (conn.dialect.name, frozenset(values))
    statement = _UPSERT_STEP.get(key)
    if statement is None:
        # One statement per dialect and set of columns, built on first use.
        insert: Any = _DIALECT_INSERT[conn.dialect.name](steps).values(position=_NEXT_POSITION)
        statement = Prepared(
            insert.on_conflict_do_update(
                index_elements=[steps.c.run_id, steps.c.name],
                set_={column: insert.excluded[column] for column in sorted(values)},
            )
        )
        _UPSERT_STEP[key] = statement
    statement.run(conn, {**new, **values, "run_id": run_id, "name": name, "w_run": run_id})


_INSERT_UNLESS_TAKEN = {
    "postgresql": Prepared(_insert_unless_taken(postgresql.insert)),
    "sqlite": Prepared(_insert_unless_taken(sqlite.insert)),
}


def insert_runs_unless_taken(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """`insert_run_unless_taken` for several runs in one statement (a multi-row INSERT): the
    ids of the runs inserted."""
    # A multi-row INSERT … RETURNING is SQLAlchemy's "insertmanyvalues", not an executemany.
    statement = _INSERT_UNLESS_TAKEN[conn.dialect.name].statement
    return {str(row[0]) for row in conn.execute(statement, rows)}


def insert_run_unless_taken(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert the run `row` unless its concurrency key's slot is held (`INSERT … ON CONFLICT DO
    NOTHING RETURNING`): whether it was inserted, in one statement and without an error that
    would end the transaction."""
    return _INSERT_UNLESS_TAKEN[conn.dialect.name].first(conn, row) is not None


def events_notifying(rows: list[dict[str, Any]], channel: str, payload: str) -> dict[str, Any]:
    """The parameters of `INSERT_EVENTS_NOTIFYING` for the event rows `rows`."""
    return {
        "run_id": [row["run_id"] for row in rows],
        "seq": [row["seq"] for row in rows],
        "time": [row["time"] for row in rows],
        "attempt": [row["attempt"] for row in rows],
        "kind": [row["kind"] for row in rows],
        "data": [json.dumps(row["data"]) for row in rows],
        "channel": channel,
        "payload": payload,
    }
