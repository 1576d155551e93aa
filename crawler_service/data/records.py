"""The values the crawler store reads and writes, apart from the store that holds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: A row of a typed table, as the steps build it (column name -> value).
Row = Mapping[str, Any]


@dataclass(frozen=True)
class RawRecord:
    """A GitHub API item to store (`kind` and `key` as documented on `models.RawItem`)."""

    kind: str
    key: str
    data: Any
    item_updated_at: datetime | None = None


@dataclass(frozen=True)
class StoredRaw:
    """A stored raw item."""

    id: int
    kind: str
    key: str
    data: Any
    fetched_at: datetime


@dataclass(frozen=True)
class SweepState:
    """A repository's last fully successful sweep: its watermark and the ETags of its responses."""

    watermark: datetime | None = None
    etags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchResult:
    """What a run's fetch step did for one repository (`ok=False`: failed permanently)."""

    repository: str
    full_name: str
    ok: bool
    error_code: str | None = None
    error: str | None = None
    prs_updated: int = 0
    requests: int = 0
    not_modified: int = 0
    #: Pull requests listed but gone (404) before their detail was fetched: number and reason.
    skipped: tuple[SkippedPull, ...] = ()
    #: GraphQL queries sent and the points of the GraphQL budget they cost.
    graphql_queries: int = 0
    graphql_points: int = 0
    #: The owner of the GitHub rate limit that served the repository (a login, never a token).
    github_owner: str | None = None


@dataclass(frozen=True)
class SkippedPull:
    """A pull request the fetch listed but could not fetch (it vanished in between)."""

    number: int
    reason: str


@dataclass(frozen=True)
class Link:
    """A closing reference of a PR (`issue_repository` is a repository key)."""

    pr_number: int
    issue_repository: str
    issue_number: int
    source: str
