"""Schedules and their firings (one row per schedule tick, unique across scheduler processes).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from common.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False, server_default=""),
        sa.Column("interval_seconds", sa.Float, nullable=True),
        sa.Column("start_time", UTCDateTime(), nullable=True),
        sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("job_kind", sa.String(32), nullable=False),
        sa.Column("job", JSONType, nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("overlap", sa.String(8), nullable=False),
        sa.Column("catch_up_window_seconds", sa.Float, nullable=False),
        sa.Column("jitter_seconds", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("fire_after", UTCDateTime(), nullable=False),
        sa.Column("last_fire_time", UTCDateTime(), nullable=True),
        sa.Column("last_run_id", sa.String(40), nullable=False, server_default=""),
        sa.Column("skipped_count", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("missed_count", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
    )
    op.create_table(
        "schedule_firings",
        sa.Column("schedule_id", sa.String(63), nullable=False),
        sa.Column("nominal_time", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False, server_default=""),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("fire_time", UTCDateTime(), nullable=True),
        sa.Column("scheduler_id", sa.String(200), nullable=False, server_default=""),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("schedule_id", "nominal_time", name="pk_schedule_firings"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            ondelete="CASCADE",
            name="fk_schedule_firings_schedule_id_schedules",
        ),
    )
    op.create_index(
        "ix_schedule_firings_outcome_claimed_at", "schedule_firings", ["outcome", "claimed_at"]
    )


def downgrade() -> None:
    op.drop_table("schedule_firings")
    op.drop_table("schedules")
