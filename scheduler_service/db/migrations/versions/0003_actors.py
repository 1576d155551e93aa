"""Who triggered, cancelled and retried each run, and who created and last changed each schedule
(the name of the caller's token).

Revision ID: 0003_actors
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_actors"
down_revision = "0002"
branch_labels = None
depends_on = None

_RUN_COLUMNS = ("triggered_by", "cancelled_by", "retried_by")
_SCHEDULE_COLUMNS = ("created_by", "updated_by")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in _RUN_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(200), nullable=False, server_default=""))
    with op.batch_alter_table("schedules") as batch:
        for name in _SCHEDULE_COLUMNS:
            batch.add_column(sa.Column(name, sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        for name in _SCHEDULE_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table("runs") as batch:
        for name in _RUN_COLUMNS:
            batch.drop_column(name)
