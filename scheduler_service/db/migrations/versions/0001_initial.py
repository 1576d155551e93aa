"""The run store: runs, labels, steps (checkpoints), event log, idempotency keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from common.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("job_kind", sa.String(32), nullable=False),
        sa.Column("job", JSONType, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("slot", sa.String(8), nullable=True),
        sa.Column("concurrency_key", sa.String(512), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("attempt_floor", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("schedule_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("nominal_time", UTCDateTime(), nullable=True),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("deadline_at", UTCDateTime(), nullable=True),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("worker_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
        sa.Column("output", JSONType, nullable=True),
        sa.Column("error", JSONType, nullable=True),
        sa.Column("last_seq", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    for slot in ("active", "queued"):
        op.create_index(
            f"uq_runs_{slot}_concurrency_key",
            "runs",
            ["concurrency_key"],
            unique=True,
            sqlite_where=sa.text(f"slot = '{slot}'"),
            postgresql_where=sa.text(f"slot = '{slot}'"),
        )
    op.create_index("ix_runs_state_not_before", "runs", ["state", "not_before", "created_at"])
    op.create_index("ix_runs_created_at_id", "runs", ["created_at", "id"])
    op.create_index("ix_runs_state_lease", "runs", ["state", "lease_expires_at"])
    op.create_index("ix_runs_finished_at", "runs", ["finished_at"])

    op.create_table(
        "run_labels",
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("key", sa.String(63), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_labels"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_run_labels_run_id_runs"
        ),
    )
    op.create_index("ix_run_labels_key_value", "run_labels", ["key", "value"])

    op.create_table(
        "run_steps",
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("current", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("total", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("output", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_run_steps"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_run_steps_run_id_runs"
        ),
    )

    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_run_events"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_run_events_run_id_runs"
        ),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    for table in ("idempotency_keys", "run_events", "run_steps", "run_labels", "runs"):
        op.drop_table(table)
