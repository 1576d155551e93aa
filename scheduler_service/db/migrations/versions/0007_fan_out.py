"""Fan-out: a child run names its parent (`parent_run_id`); a parent counts its children.

Revision ID: 0007_fan_out
Revises: 0006_hot_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_fan_out"
down_revision = "0006_hot_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.String(40), nullable=True))
        batch.add_column(
            sa.Column("children_total", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(
            sa.Column("children_done", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    op.create_index("ix_runs_parent_created", "runs", ["parent_run_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_parent_created", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("children_done")
        batch.drop_column("children_total")
        batch.drop_column("parent_run_id")
