"""The cluster's crawlers: which scheduler replica each one is connected to (ListWorkers).

Revision ID: 0005_workers
Revises: 0004_schedule_claims
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from common.db import UTCDateTime

revision = "0005_workers"
down_revision = "0004_schedule_claims"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(200), nullable=False),
        sa.Column("replica_id", sa.String(200), nullable=False),
        sa.Column("replica_address", sa.String(300), nullable=False, server_default=""),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("free_slots", sa.Integer, nullable=False),
        sa.Column("run_ids", JSONType, nullable=False),
        sa.Column("draining", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("version", sa.String(64), nullable=False, server_default=""),
        sa.Column("protocol_version", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("connected_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name="pk_workers"),
    )
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_workers_heartbeat_at", table_name="workers")
    op.drop_table("workers")
