"""The run store's tables (SQLAlchemy 2.0 typed models).

The invariants live here as database constraints, not Python checks:
- at most one *active* run per concurrency key (pending, backing off or running): a partial unique
  index on `concurrency_key WHERE slot = 'active'`;
- at most one *queued* run per concurrency key: the same on `slot = 'queued'`;
- request-id idempotency: `idempotency_keys.request_id` is the primary key;
- the append-only event log is keyed `(run_id, seq)`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import UTCDateTime

JSONType = JSON().with_variant(JSONB(), "postgresql")
#: `runs.slot` values: the run holds its concurrency key's one active or one queued place
#: (NULL once finished). Not run states: a PENDING run holds the active slot.
ACTIVE_SLOT = "active"
QUEUED_SLOT = "queued"
#: A fan-out child waiting behind its key's active run: QUEUED like the queued run, but not
#: unique (several parents may wait for one repository); promoted in creation order with it.
WAITING_SLOT = "waiting"

#: Partial index predicate of the active runs (migration 0004): the hot queries stay as cheap with
#: a million finished runs as with none.
_ACTIVE_WHERE = text("state IN ('pending', 'queued', 'running')")


def _partial(name: str, *columns: str, where: str | Any) -> Index:
    predicate = text(where) if isinstance(where, str) else where
    return Index(name, *columns, sqlite_where=predicate, postgresql_where=predicate)


_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_kind: Mapped[str] = mapped_column(String(32))
    job: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    #: 'active' (pending, backing off or running), 'queued', 'waiting', or NULL once finished.
    slot: Mapped[str | None] = mapped_column(String(8))
    concurrency_key: Mapped[str] = mapped_column(String(512))
    attempt: Mapped[int] = mapped_column(Integer)
    #: Attempts at or below this number do not count against max_attempts (RetryRun, releases).
    attempt_floor: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))
    schedule_id: Mapped[str] = mapped_column(String(128), server_default="")
    nominal_time: Mapped[datetime | None]
    labels: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    not_before: Mapped[datetime | None]
    worker_id: Mapped[str] = mapped_column(String(200), server_default="")
    lease_expires_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    output: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    last_seq: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: Token names of who triggered, cancelled and retried the run ("" when unknown).
    triggered_by: Mapped[str] = mapped_column(String(200), server_default="")
    cancelled_by: Mapped[str] = mapped_column(String(200), server_default="")
    retried_by: Mapped[str] = mapped_column(String(200), server_default="")
    #: The fan-out parent of a child run (one repository of a run over several); NULL otherwise.
    parent_run_id: Mapped[str | None] = mapped_column(String(40))
    #: A fan-out parent's number of children (0 for any other run), and how many have ended.
    children_total: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    children_done: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    __table_args__ = (
        Index(
            "uq_runs_active_concurrency_key",
            "concurrency_key",
            unique=True,
            sqlite_where=text("slot = 'active'"),
            postgresql_where=text("slot = 'active'"),
        ),
        Index(
            "uq_runs_queued_concurrency_key",
            "concurrency_key",
            unique=True,
            sqlite_where=text("slot = 'queued'"),
            postgresql_where=text("slot = 'queued'"),
        ),
        Index("ix_runs_state_not_before", "state", "not_before", "created_at"),
        Index("ix_runs_created_at_id", "created_at", "id"),
        Index("ix_runs_state_lease", "state", "lease_expires_at"),
        Index("ix_runs_finished_at", "finished_at"),
        _partial("ix_runs_dispatchable", "created_at", "id", where="state = 'pending'"),
        _partial("ix_runs_running_lease", "lease_expires_at", where="state = 'running'"),
        _partial(
            "ix_runs_running_cancel",
            "cancel_requested_at",
            where="state = 'running' AND cancel_requested_at IS NOT NULL",
        ),
        _partial("ix_runs_active_deadline", "deadline_at", where=_ACTIVE_WHERE),
        _partial("ix_runs_active_job_state", "job_kind", "state", where=_ACTIVE_WHERE),
        Index("ix_runs_concurrency_key_created", "concurrency_key", "created_at", "id"),
        Index("ix_runs_parent_created", "parent_run_id", "created_at", "id"),
    )


class RunLabelRow(Base):
    __tablename__ = "run_labels"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))

    __table_args__ = (
        Index("ix_run_labels_key_value", "key", "value"),
        Index("ix_run_labels_key_value_run", "key", "value", "run_id"),
    )


class RunStepRow(Base):
    __tablename__ = "run_steps"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    current: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    message: Mapped[str] = mapped_column(Text, server_default="")
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: The checkpoint of a succeeded step, reused by later attempts.
    output: Mapped[dict[str, Any] | None]


class RunEventRow(Base):
    __tablename__ = "run_events"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[datetime]
    attempt: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]]


class IdempotencyRow(Base):
    __tablename__ = "idempotency_keys"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    payload_hash: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(40))
    disposition: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ScheduleRow(Base):
    """A recurring run (see `scheduler_service.schedules.model.Schedule`)."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    cron: Mapped[str] = mapped_column(String(200), server_default="")
    interval_seconds: Mapped[float | None] = mapped_column(Float)
    start_time: Mapped[datetime | None]
    time_zone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    job_kind: Mapped[str] = mapped_column(String(32))
    job: Mapped[dict[str, Any]]
    labels: Mapped[dict[str, Any]]
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    overlap: Mapped[str] = mapped_column(String(8))
    catch_up_window_seconds: Mapped[float] = mapped_column(Float)
    jitter_seconds: Mapped[float] = mapped_column(Float, server_default=text("0"))
    paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    fire_after: Mapped[datetime]
    last_fire_time: Mapped[datetime | None]
    last_run_id: Mapped[str] = mapped_column(String(40), server_default="")
    skipped_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    missed_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_by: Mapped[str] = mapped_column(String(200), server_default="")
    updated_by: Mapped[str] = mapped_column(String(200), server_default="")
    #: When a replica should next settle the schedule (NULL while paused): claimed with SKIP
    #: LOCKED once due, so each tick is processed by one replica.
    next_due_at: Mapped[datetime | None] = mapped_column(index=True)
    #: The newest nominal time settled (fired or missed); firings may be purged.
    last_nominal: Mapped[datetime | None]


class ScheduleFiringRow(Base):
    """One tick of a schedule. The primary key `(schedule_id, nominal_time)` is the constraint
    that makes several scheduler processes fire each tick exactly once."""

    __tablename__ = "schedule_firings"

    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    nominal_time: Mapped[datetime] = mapped_column(primary_key=True)
    outcome: Mapped[str] = mapped_column(String(8))
    run_id: Mapped[str] = mapped_column(String(40), server_default="")
    claimed_at: Mapped[datetime]
    fire_time: Mapped[datetime | None]
    scheduler_id: Mapped[str] = mapped_column(String(200), server_default="")
    error: Mapped[str] = mapped_column(Text, server_default="")

    __table_args__ = (
        Index("ix_schedule_firings_outcome_claimed_at", "outcome", "claimed_at"),
        Index("ix_schedule_firings_nominal_time", "nominal_time"),
    )


class WorkerRow(Base):
    """A crawler connected to some scheduler replica: written by that replica when the crawler
    connects, refreshed every GHPULSE_WORKERS_REFRESH seconds, deleted when it disconnects. A row
    whose `heartbeat_at` is older than three refreshes belongs to a replica that died; any replica
    deletes it."""

    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    replica_id: Mapped[str] = mapped_column(String(200))
    replica_address: Mapped[str] = mapped_column(String(300), server_default="")
    slots: Mapped[int] = mapped_column(Integer)
    free_slots: Mapped[int] = mapped_column(Integer)
    run_ids: Mapped[list[str]] = mapped_column(JSONType)
    draining: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    version: Mapped[str] = mapped_column(String(64), server_default="")
    protocol_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    connected_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)
