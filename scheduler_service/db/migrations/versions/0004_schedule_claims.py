"""Schedules claimed by due time: `next_due_at` (when a replica should next settle the schedule;
claimed with SKIP LOCKED) and `last_nominal` (the newest tick settled, so claims never read the
firings table and firings can be purged); firings indexed by nominal time for the purge.

Revision ID: 0004_schedule_claims
Revises: 0003_actors
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from common.db import UTCDateTime

revision = "0004_schedule_claims"
down_revision = "0003_actors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("next_due_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("last_nominal", UTCDateTime(), nullable=True))
    op.create_index("ix_schedules_next_due_at", "schedules", ["next_due_at"])
    op.create_index("ix_schedule_firings_nominal_time", "schedule_firings", ["nominal_time"])
    # Every active schedule is due for a look at once: the first claim computes its real due time.
    op.execute(
        "UPDATE schedules SET last_nominal = (SELECT max(f.nominal_time) FROM schedule_firings f "
        "WHERE f.schedule_id = schedules.id), "
        "next_due_at = CASE WHEN paused THEN NULL ELSE fire_after END"
    )


def downgrade() -> None:
    op.drop_index("ix_schedule_firings_nominal_time", table_name="schedule_firings")
    op.drop_index("ix_schedules_next_due_at", table_name="schedules")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("last_nominal")
        batch.drop_column("next_due_at")
