"""Pull requests a fetch skipped (listed, then 404 on detail/reviews/commits), per run and
repository. Additive: an older crawler ignores the column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fetch_progress") as batch:
        batch.add_column(sa.Column("skipped", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fetch_progress") as batch:
        batch.drop_column("skipped")
