"""GraphQL queries and points a fetch spent, per run and repository. Additive: an older crawler
ignores the columns (they default to 0).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fetch_progress") as batch:
        batch.add_column(
            sa.Column("graphql_queries", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("graphql_points", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("fetch_progress") as batch:
        batch.drop_column("graphql_points")
        batch.drop_column("graphql_queries")
