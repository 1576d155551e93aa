"""Read-side queries over the crawler's tables, returning domain types (no protobuf here).

Every query reads what is stored right now and never waits for heavy work; whether a repository's
closing links were computed is its `links_computed_at` marker, reported as
`RepositoryRef.links_complete`. Repository names are matched case-insensitively (by
`models.repo_key`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.clock import utc
from common.db import runs_to_end
from common.errors import FieldViolation, InvalidArgument, NotFound
from crawler_service.data.cycle_times import SizeClass, percentile
from crawler_service.data.models import ClosingLink, PullRequest, Repository, repo_key

PERCENTILES = (50, 75, 90)
PHASES = ("coding", "pickup", "review", "deploy")
STATES = ("open", "closed", "merged")


@dataclass(frozen=True)
class RepositoryRef:
    """A crawled repository: its key (lowercased `owner/name`), GitHub's spelling, link status."""

    key: str
    full_name: str
    links_complete: bool


@dataclass(frozen=True)
class PageKey:
    """The sort key of the last item of a page: pages are ordered newest first."""

    created_at: datetime
    number: int

    def encode(self) -> str:
        """An opaque page token for this key."""
        raw = json.dumps([self.created_at.isoformat(), self.number]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, field: str = "page_token") -> PageKey:
        """The key in `token`; raises InvalidArgument naming `field` if it is not one of ours."""
        try:
            if len(token) > 512:
                raise ValueError("too long")
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            created_at, number = json.loads(raw)
            when = datetime.fromisoformat(created_at)
            # A PR number fits the 32-bit column; a larger one would fail in the database.
            if when.tzinfo is None or type(number) is not int or not 0 < number < 2**31:
                raise ValueError(token)
            when = utc(when)  # OverflowError for an offset pushing it past year 1 or 9999
        except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
            raise InvalidArgument(
                [FieldViolation(field, "not a page token of this query")]
            ) from exc
        return cls(when, number)


@dataclass(frozen=True)
class PullRequestFilter:
    """Which pull requests to list; None means no constraint. `merged_until` is exclusive."""

    state: str | None = None
    merged_since: datetime | None = None
    merged_until: datetime | None = None
    size_class: SizeClass | None = None


@dataclass(frozen=True)
class LinkRef:
    """One end of a closing link: an issue (for a PR) or a PR (for an issue), with its source."""

    repository: str
    number: int
    source: str


@dataclass(frozen=True)
class PullRequestInfo:
    """A stored pull request with its size class, cycle times and closing issues."""

    repository: str
    number: int
    title: str
    state: str
    author: str
    draft: bool
    base_ref: str
    url: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    merged_at: datetime | None
    additions: int
    deletions: int
    changed_files: int
    size_class: SizeClass | None
    coding: timedelta | None
    pickup: timedelta | None
    review: timedelta | None
    deploy: timedelta | None
    closing_issues: tuple[LinkRef, ...]


@dataclass(frozen=True)
class PullRequestPage:
    items: tuple[PullRequestInfo, ...]
    #: The key to continue after, or None on the last page.
    next_key: PageKey | None


@dataclass(frozen=True)
class PhaseStats:
    """Percentiles of one cycle-time phase over the PRs where it applies (None if none does)."""

    count: int
    p50: timedelta | None
    p75: timedelta | None
    p90: timedelta | None


@dataclass(frozen=True)
class RepositoryStats:
    """Aggregates over a repository's PRs created in a window."""

    repository: str
    total: int
    #: Every state in `STATES`, zeros included.
    by_state: dict[str, int]
    #: Every size class, zeros included; PRs not classified yet are not counted.
    by_size_class: dict[SizeClass, int]
    #: Keyed by `PHASES`.
    phases: dict[str, PhaseStats]
    #: (Monday 00:00 UTC, merged PRs) for every week from the first to the last merge, in order.
    merged_per_week: tuple[tuple[datetime, int], ...]


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _week_start(when: datetime) -> datetime:
    day = utc(when).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def phase_stats(values: Sequence[float]) -> PhaseStats:
    """p50/p75/p90 of `values` (seconds), linear interpolation (see `cycle_times.percentile`)."""
    if not values:
        return PhaseStats(0, None, None, None)
    p50, p75, p90 = (timedelta(seconds=percentile(values, q)) for q in PERCENTILES)
    return PhaseStats(len(values), p50, p75, p90)


def weekly_counts(merged: Iterable[datetime]) -> tuple[tuple[datetime, int], ...]:
    """Merges per week (Monday 00:00 UTC), with empty weeks between the first and last filled in."""
    counts = Counter(_week_start(when) for when in merged)
    if not counts:
        return ()
    weeks, week = [], min(counts)
    while week <= max(counts):
        weeks.append((week, counts[week]))
        week += timedelta(days=7)
    return tuple(weeks)


@runs_to_end
class Queries:
    """The read side of the crawler's data store."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def repository(self, name: str) -> RepositoryRef:
        """The crawled repository `name` ("owner/name", any case); NotFound if never crawled."""
        async with self._sessions() as session:
            row = await session.get(Repository, repo_key(name))
        if row is None:
            raise NotFound(f"repository {name} was never crawled", repository=name)
        return RepositoryRef(row.repository, row.full_name, row.links_computed_at is not None)

    async def list_pull_requests(
        self,
        repo: RepositoryRef,
        filters: PullRequestFilter,
        page_size: int,
        after: PageKey | None = None,
    ) -> PullRequestPage:
        """One page of `repo`'s pull requests, newest first (by creation, then number)."""
        query = _filtered(repo.key, filters, after).limit(page_size + 1)
        async with self._sessions() as session:
            rows = list((await session.scalars(query)).all())
            more = len(rows) > page_size
            rows = rows[:page_size]
            links = await self._issues_of(session, repo.key, [row.number for row in rows])
        items = tuple(_pull_request(repo, row, links.get(row.number, ())) for row in rows)
        next_key = PageKey(rows[-1].created_at, rows[-1].number) if more else None
        return PullRequestPage(items, next_key)

    async def repository_stats(
        self, repo: RepositoryRef, since: datetime | None, until: datetime | None
    ) -> RepositoryStats:
        """Counts, cycle-time percentiles and weekly merges of PRs created in [since, until)."""
        columns = (
            PullRequest.state,
            PullRequest.size_class,
            PullRequest.merged_at,
            PullRequest.coding_seconds,
            PullRequest.pickup_seconds,
            PullRequest.review_seconds,
            PullRequest.deploy_seconds,
        )
        query = select(*columns).where(PullRequest.repository == repo.key)
        query = query.where(*_created_window(since, until))
        async with self._sessions() as session:
            rows = (await session.execute(query)).all()
        return _aggregate(repo, rows)

    async def closing_issues(self, repo: RepositoryRef, pull_number: int) -> list[LinkRef]:
        """The issues pull request `pull_number` of `repo` closes; NotFound if it is not stored."""
        async with self._sessions() as session:
            if await session.get(PullRequest, (repo.key, pull_number)) is None:
                raise NotFound(
                    f"pull request {repo.full_name}#{pull_number} is not stored",
                    repository=repo.full_name,
                    pull_number=pull_number,
                )
            links = await self._issues_of(session, repo.key, [pull_number])
        return list(links.get(pull_number, ()))

    async def closing_pull_requests(self, repo: RepositoryRef, issue_number: int) -> list[LinkRef]:
        """The stored pull requests (of any repository) closing issue `issue_number` of `repo`."""
        query = (
            select(ClosingLink)
            .where(ClosingLink.issue_repository == repo.key)
            .where(ClosingLink.issue_number == issue_number)
            .order_by(ClosingLink.repository, ClosingLink.pr_number)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
            names = await _full_names(session, {row.repository for row in rows})
        return [LinkRef(names[row.repository], row.pr_number, row.source) for row in rows]

    async def _issues_of(
        self, session: AsyncSession, key: str, numbers: Sequence[int]
    ) -> dict[int, tuple[LinkRef, ...]]:
        if not numbers:
            return {}
        query = (
            select(ClosingLink)
            .where(ClosingLink.repository == key, ClosingLink.pr_number.in_(numbers))
            .order_by(ClosingLink.id)
        )
        rows = (await session.scalars(query)).all()
        names = await _full_names(session, {row.issue_repository for row in rows})
        links: dict[int, list[LinkRef]] = {}
        for row in rows:
            link = LinkRef(names[row.issue_repository], row.issue_number, row.source)
            links.setdefault(row.pr_number, []).append(link)
        return {number: tuple(found) for number, found in links.items()}


async def _full_names(session: AsyncSession, keys: set[str]) -> dict[str, str]:
    """GitHub's spelling of each crawled repository key; other keys map to themselves."""
    names = {key: key for key in keys}
    if keys:
        query = select(Repository.repository, Repository.full_name).where(
            Repository.repository.in_(keys)
        )
        names.update((key, name) for key, name in (await session.execute(query)).all())
    return names


def _created_window(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    conditions = []
    if since is not None:
        conditions.append(PullRequest.created_at >= since)
    if until is not None:
        conditions.append(PullRequest.created_at < until)
    return conditions


def _filtered(key: str, filters: PullRequestFilter, after: PageKey | None) -> Select[PullRequest]:
    query = select(PullRequest).where(PullRequest.repository == key)
    if filters.state is not None:
        query = query.where(PullRequest.state == filters.state)
    if filters.merged_since is not None:
        query = query.where(PullRequest.merged_at >= filters.merged_since)
    if filters.merged_until is not None:
        query = query.where(PullRequest.merged_at < filters.merged_until)
    if filters.size_class is not None:
        query = query.where(PullRequest.size_class == filters.size_class.value)
    if after is not None:
        query = query.where(
            or_(
                PullRequest.created_at < after.created_at,
                and_(PullRequest.created_at == after.created_at, PullRequest.number < after.number),
            )
        )
    return query.order_by(PullRequest.created_at.desc(), PullRequest.number.desc())


def _size(value: str | None) -> SizeClass | None:
    return SizeClass(value) if value is not None and value in SizeClass.__members__ else None


def _pull_request(
    repo: RepositoryRef, row: PullRequest, closing: tuple[LinkRef, ...]
) -> PullRequestInfo:
    return PullRequestInfo(
        repository=repo.full_name,
        number=row.number,
        title=row.title,
        state=row.state,
        author=row.author,
        draft=row.draft,
        base_ref=row.base_ref,
        url=row.url,
        created_at=row.created_at,
        updated_at=row.updated_at,
        closed_at=row.closed_at,
        merged_at=row.merged_at,
        additions=row.additions,
        deletions=row.deletions,
        changed_files=row.changed_files,
        size_class=_size(row.size_class),
        coding=_seconds(row.coding_seconds),
        pickup=_seconds(row.pickup_seconds),
        review=_seconds(row.review_seconds),
        deploy=_seconds(row.deploy_seconds),
        closing_issues=closing,
    )


def _aggregate(repo: RepositoryRef, rows: Sequence[Any]) -> RepositoryStats:
    states = Counter(row.state for row in rows)
    sizes = Counter(_size(row.size_class) for row in rows)
    phases = {
        phase: phase_stats(
            [value for row in rows if (value := getattr(row, f"{phase}_seconds")) is not None]
        )
        for phase in PHASES
    }
    return RepositoryStats(
        repository=repo.full_name,
        total=len(rows),
        by_state={state: states[state] for state in STATES},
        by_size_class={size: sizes[size] for size in SizeClass},
        phases=phases,
        merged_per_week=weekly_counts(row.merged_at for row in rows if row.merged_at is not None),
    )
