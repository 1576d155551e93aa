"""The crawler's tables (SQLAlchemy 2.0 typed declarative models).

Naming: every `repository` column holds the repository key, `owner/name` lowercased (GitHub names
are case-insensitive; `repo_key` makes one). `repositories.full_name` keeps GitHub's spelling.
All timestamps are timezone-aware UTC (`UTCDateTime`).

Write side: `crawler_service.data.store.CrawlerStore`. Read side: `crawler_service.data.queries`.
Schema changes go through a new Alembic revision in `crawler_service/data/migrations/versions/`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import UTCDateTime

#: `pull_requests.state` values.
STATE_OPEN = "open"
STATE_CLOSED = "closed"
STATE_MERGED = "merged"

#: `closing_links.source` values.
SOURCE_DESCRIPTION = "description"
SOURCE_COMMIT_MESSAGE = "commit_message"

#: `raw_items.kind` values and what `key` holds for each.
RAW_REPOSITORY = "repository"  # key "": the repository object
RAW_PULL = "pull"  # key: PR number; the PR detail object
RAW_REVIEWS = "reviews"  # key: PR number; the list of the PR's reviews
RAW_COMMITS = "commits"  # key: PR number; the list of the PR's commits (at most 250)
RAW_RELEASE = "release"  # key: release id; one release object


def repo_key(full_name: str) -> str:
    """The key a repository is stored under: `owner/name`, lowercased."""
    return full_name.strip().lower()


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Repository(Base):
    """A repository seen by a crawl (from its GitHub repository object)."""

    __tablename__ = "repositories"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    full_name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(100), index=True)  # lowercased
    default_branch: Mapped[str] = mapped_column(String(255))
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]
    #: Set when the link step last succeeded for this repository; NULL: links never computed.
    links_computed_at: Mapped[datetime | None]
    #: Set when the classify step last succeeded for this repository.
    classified_at: Mapped[datetime | None]


class RawItem(Base):
    """A GitHub API item as fetched, the source every typed table is rebuilt from."""

    __tablename__ = "raw_items"
    __table_args__ = (
        UniqueConstraint("repository", "kind", "key", name="uq_raw_items_repository_kind_key"),
        Index("ix_raw_items_pending", "repository", "pending"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(40))
    data: Mapped[Any] = mapped_column(JSON)
    #: The item's own `updated_at`, where it has one (PRs): lets fetch skip unchanged PRs cheaply.
    item_updated_at: Mapped[datetime | None]
    fetched_at: Mapped[datetime]
    #: True while the upsert step has not turned this item into typed rows yet.
    pending: Mapped[bool] = mapped_column(Boolean, default=True)


class FetchState(Base):
    """Where a repository's last fully successful sweep got to.

    `watermark` and `etags` advance together, only forward, and only after a complete sweep.
    """

    __tablename__ = "fetch_state"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: The newest PR `updated_at` seen by the last fully successful sweep.
    watermark: Mapped[datetime | None]
    #: Request URL -> ETag of the responses of that sweep.
    etags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_success_at: Mapped[datetime | None]


class RepositoryLock(Base):
    """A lease serializing fetch work on one repository across runs and crawler replicas."""

    __tablename__ = "repository_locks"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]


class FetchProgress(Base):
    """Per run, the repositories its fetch step finished: a retried attempt skips them."""

    __tablename__ = "fetch_progress"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: GitHub's spelling when known, else as the run named it.
    full_name: Mapped[str] = mapped_column(String(200))
    ok: Mapped[bool] = mapped_column(Boolean)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    prs_updated: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    not_modified: Mapped[int] = mapped_column(Integer, default=0)
    #: Pull requests listed but gone by the time their detail, reviews or commits were asked for:
    #: `[{"number": N, "reason": "..."}]` (the next crawl retries them).
    skipped: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    graphql_queries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    graphql_points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The owner of the GitHub rate limit that served the repository (a login, never a token).
    github_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    finished_at: Mapped[datetime]


class GitHubBudget(Base):
    """What the fleet knows of one GitHub owner's rate limits (see `github.budget`)."""

    __tablename__ = "github_budgets"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: REST requests left until `reset_at` (epoch seconds), as the latest answers said.
    remaining: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reset_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: No request of the owner before this time (epoch seconds): a secondary rate limit.
    paused_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime]


class GitHubSlot(Base):
    """One of the `GHPULSE_GITHUB_FLEET_CONCURRENCY` requests an owner may have in flight across
    the fleet; free when `holder` is NULL or `expires_at` (epoch seconds) has passed."""

    __tablename__ = "github_slots"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class PullRequest(Base):
    """A pull request with its size class and cycle times (seconds; NULL when not applicable)."""

    __tablename__ = "pull_requests"
    __table_args__ = (
        Index("ix_pull_requests_repository_merged_at", "repository", "merged_at"),
        Index("ix_pull_requests_repository_created_at", "repository", "created_at"),
    )

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    title: Mapped[str] = mapped_column(Text)
    #: open | closed (not merged) | merged
    state: Mapped[str] = mapped_column(String(10))
    #: Login; "" when GitHub returns no user (deleted account).
    author: Mapped[str] = mapped_column(String(100))
    author_is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    draft: Mapped[bool] = mapped_column(Boolean, default=False)
    base_ref: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    merged_at: Mapped[datetime | None]
    additions: Mapped[int] = mapped_column(Integer, default=0)
    deletions: Mapped[int] = mapped_column(Integer, default=0)
    changed_files: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(String(500), default="")
    #: XS | S | M | L | XL | XXL, set by the classify step.
    size_class: Mapped[str | None] = mapped_column(String(3))
    coding_seconds: Mapped[float | None] = mapped_column(Float)
    pickup_seconds: Mapped[float | None] = mapped_column(Float)
    review_seconds: Mapped[float | None] = mapped_column(Float)
    deploy_seconds: Mapped[float | None] = mapped_column(Float)


class Review(Base):
    """A submitted review of a pull request."""

    __tablename__ = "reviews"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    pr_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    review_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    author: Mapped[str] = mapped_column(String(100))
    author_is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(30))
    #: NULL for pending reviews.
    submitted_at: Mapped[datetime | None]


class Commit(Base):
    """A commit of a pull request (as the PR commits endpoint lists it: at most 250)."""

    __tablename__ = "commits"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    pr_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sha: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Position in the PR's commit list (oldest first, as GitHub lists them).
    position: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")
    author_login: Mapped[str] = mapped_column(String(100), default="")
    authored_at: Mapped[datetime | None]
    committed_at: Mapped[datetime | None]


class Release(Base):
    """A published release of a repository (drafts are not stored)."""

    __tablename__ = "releases"

    repository: Mapped[str] = mapped_column(String(200), primary_key=True)
    release_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tag_name: Mapped[str] = mapped_column(String(255))
    prerelease: Mapped[bool] = mapped_column(Boolean, default=False)
    published_at: Mapped[datetime | None]


class ClosingLink(Base):
    """A pull request -> issue closing reference.

    One row per (PR, issue): when both the description and a commit message close the same issue the
    description wins as `source`.
    """

    __tablename__ = "closing_links"
    __table_args__ = (
        UniqueConstraint(
            "repository",
            "pr_number",
            "issue_repository",
            "issue_number",
            name="uq_closing_links_pr_issue",
        ),
        Index("ix_closing_links_issue", "issue_repository", "issue_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(String(200))
    pr_number: Mapped[int] = mapped_column(Integer)
    #: The issue's repository key (lowercased `owner/name`; may differ from the PR's).
    issue_repository: Mapped[str] = mapped_column(String(200))
    issue_number: Mapped[int] = mapped_column(Integer)
    #: description | commit_message
    source: Mapped[str] = mapped_column(String(20))
