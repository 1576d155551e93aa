"""The fleet's shared GitHub budget per rate-limit owner (`github_budgets`), and which owner
served each repository of a run (`fetch_progress.github_owner`). Additive: an older crawler
ignores both.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from common.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "github_budgets",
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("reset_at", sa.Float(), nullable=True),
        sa.Column("paused_until", sa.Float(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    with op.batch_alter_table("fetch_progress") as batch:
        batch.add_column(sa.Column("github_owner", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fetch_progress") as batch:
        batch.drop_column("github_owner")
    op.drop_table("github_budgets")
