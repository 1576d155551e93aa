"""The steps of the crawl, recalculate and backfill_links jobs, and what they share.

Every step works per repository on the run's targets: the repositories the fetch step completed when
the job has a fetch step, else the repositories the spec names (an organization's as stored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeVar

from common.jobs import BackfillLinksSpec, CrawlSpec, RecalculateSpec
from crawler_service.data.models import repo_key
from crawler_service.data.store import CrawlerStore
from crawler_service.errors import PermanentError
from crawler_service.jobs.registry import StepContext

T = TypeVar("T")
R = TypeVar("R")


@asynccontextmanager
async def closing(pages: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator when the block ends, also when it stops iterating early."""
    try:
        yield pages
    finally:
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


def parse_time(value: str | None) -> datetime | None:
    """A GitHub ISO 8601 timestamp (`2024-05-01T12:00:00Z`) as aware UTC; None stays None."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def dedupe(names: Iterable[str]) -> list[str]:
    """`names` without case-insensitive duplicates, first spelling and order kept."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(repo_key(name), name)
    return list(seen.values())


async def targets(ctx: StepContext, store: CrawlerStore) -> list[str]:
    """The repository keys this step works on (see the module docstring)."""
    fetched = ctx.outputs.get("fetch")
    if fetched is not None:
        return [repo_key(name) for name in fetched.get("repositories", [])]
    spec = ctx.spec
    if isinstance(spec, BackfillLinksSpec):
        return [repo_key(spec.repository)]
    if not isinstance(spec, CrawlSpec | RecalculateSpec):
        raise PermanentError(f"{ctx.step} cannot run for a {spec.kind} job")
    names = list(spec.repositories)
    if spec.organization:
        names += await store.repositories_of(spec.organization)
    return [repo_key(name) for name in dedupe(names)]


async def each_repository(
    ctx: StepContext,
    store: CrawlerStore,
    work: Callable[[str], Awaitable[R]],
    done: str,
) -> list[R]:
    """Run `work` on every target repository in turn, reporting `(i, n, repository)` progress
    before each and `(n, n, done)` at the end; returns the results in order."""
    repositories = await targets(ctx, store)
    results = []
    for index, repository in enumerate(repositories):
        await ctx.progress(index, len(repositories), repository)
        results.append(await work(repository))
    await ctx.progress(len(repositories), len(repositories), done)
    return results
