"""Initial crawler schema: raw items, fetch state and locks, typed PR data, closing links.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from common.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_REPO = sa.String(200)


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "repositories",
        sa.Column("repository", _REPO, primary_key=True),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("default_branch", sa.String(255), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        _ts("updated_at", nullable=False),
        _ts("links_computed_at"),
        _ts("classified_at"),
    )
    op.create_index("ix_repositories_owner", "repositories", ["owner"])
    op.create_table(
        "raw_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("repository", _REPO, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        _ts("item_updated_at"),
        _ts("fetched_at", nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("repository", "kind", "key", name="uq_raw_items_repository_kind_key"),
    )
    op.create_index("ix_raw_items_pending", "raw_items", ["repository", "pending"])
    op.create_table(
        "fetch_state",
        sa.Column("repository", _REPO, primary_key=True),
        _ts("watermark"),
        sa.Column("etags", sa.JSON(), nullable=False),
        _ts("last_success_at"),
    )
    op.create_table(
        "repository_locks",
        sa.Column("repository", _REPO, primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        _ts("expires_at", nullable=False),
    )
    op.create_table(
        "fetch_progress",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("repository", _REPO, primary_key=True),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prs_updated", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("not_modified", sa.Integer(), nullable=False),
        _ts("finished_at", nullable=False),
    )
    _create_pr_tables()


def _create_pr_tables() -> None:
    op.create_table(
        "pull_requests",
        sa.Column("repository", _REPO, primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("author_is_bot", sa.Boolean(), nullable=False),
        sa.Column("draft", sa.Boolean(), nullable=False),
        sa.Column("base_ref", sa.String(255), nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("closed_at"),
        _ts("merged_at"),
        sa.Column("additions", sa.Integer(), nullable=False),
        sa.Column("deletions", sa.Integer(), nullable=False),
        sa.Column("changed_files", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("size_class", sa.String(3), nullable=True),
        sa.Column("coding_seconds", sa.Float(), nullable=True),
        sa.Column("pickup_seconds", sa.Float(), nullable=True),
        sa.Column("review_seconds", sa.Float(), nullable=True),
        sa.Column("deploy_seconds", sa.Float(), nullable=True),
    )
    op.create_index(
        "ix_pull_requests_repository_merged_at", "pull_requests", ["repository", "merged_at"]
    )
    op.create_index(
        "ix_pull_requests_repository_created_at", "pull_requests", ["repository", "created_at"]
    )
    op.create_table(
        "reviews",
        sa.Column("repository", _REPO, primary_key=True),
        sa.Column("pr_number", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("review_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("author_is_bot", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        _ts("submitted_at"),
    )
    op.create_table(
        "commits",
        sa.Column("repository", _REPO, primary_key=True),
        sa.Column("pr_number", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("sha", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("author_login", sa.String(100), nullable=False),
        _ts("authored_at"),
        _ts("committed_at"),
    )
    op.create_table(
        "releases",
        sa.Column("repository", _REPO, primary_key=True),
        sa.Column("release_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("tag_name", sa.String(255), nullable=False),
        sa.Column("prerelease", sa.Boolean(), nullable=False),
        _ts("published_at"),
    )
    op.create_table(
        "closing_links",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("repository", _REPO, nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("issue_repository", _REPO, nullable=False),
        sa.Column("issue_number", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.UniqueConstraint(
            "repository",
            "pr_number",
            "issue_repository",
            "issue_number",
            name="uq_closing_links_pr_issue",
        ),
    )
    op.create_index("ix_closing_links_issue", "closing_links", ["issue_repository", "issue_number"])


def downgrade() -> None:
    for table in (
        "closing_links",
        "releases",
        "commits",
        "reviews",
        "pull_requests",
        "fetch_progress",
        "repository_locks",
        "fetch_state",
        "raw_items",
        "repositories",
    ):
        op.drop_table(table)
