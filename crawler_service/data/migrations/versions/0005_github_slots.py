"""The fleet's in-flight GitHub requests per rate-limit owner (`github_slots`): one row per slot
of GHPULSE_GITHUB_FLEET_CONCURRENCY, held by one request at a time. Additive: an older crawler
ignores it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "github_slots",
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("slot", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("github_slots")
