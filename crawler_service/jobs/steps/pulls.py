"""Pull requests through the REST API: list pages down to the cutoff, then detail, reviews and
commits of every new or changed PR, three requests each (see the fetch step's docstring)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crawler_service.data.models import RAW_COMMITS, RAW_PULL, RAW_REVIEWS
from crawler_service.data.records import RawRecord, SkippedPull
from crawler_service.data.store import CrawlerStore
from crawler_service.github.client import GitHubClient, GitHubResponse
from crawler_service.github.errors import GitHubNotFound
from crawler_service.jobs.steps import closing, parse_time
from crawler_service.jobs.steps.sweep import Sweep, newer


@dataclass(frozen=True)
class Listing:
    """What list pages said: the new or changed PRs' list items, and the newest `updated_at`."""

    changed: dict[int, dict[str, Any]]
    newest: datetime | None


def read_page(
    page: GitHubResponse,
    cutoff: datetime | None,
    known: dict[int, datetime | None],
    refresh: bool,
    listing: Listing,
) -> tuple[Listing, bool]:
    """`listing` plus one list page; True when the page reached the cutoff."""
    newest = listing.newest
    for item in page.data:
        updated = parse_time(item["updated_at"])
        newest = newer(newest, updated)
        if cutoff is not None and updated is not None and updated < cutoff:
            return Listing(listing.changed, newest), True
        if refresh or known.get(int(item["number"])) != updated:
            listing.changed[int(item["number"])] = item
    return Listing(listing.changed, newest), False


@dataclass
class RestPulls:
    """Fetches a repository's new or changed pull requests through REST."""

    store: CrawlerStore
    github: GitHubClient
    #: PRs fetched at once (the client bounds the requests in flight anyway).
    concurrency: int = 8

    async def fetch(
        self, sweep: Sweep, etags: dict[str, str], cutoff: datetime | None
    ) -> tuple[int, datetime | None]:
        """Fetch and store what changed; (PRs stored, newest `updated_at` listed)."""
        listing = await self.changed(sweep, etags, cutoff)
        await self._fetch_pulls(sweep, listing.changed)
        return len(listing.changed) - len(sweep.skipped), listing.newest

    async def changed(
        self, sweep: Sweep, etags: dict[str, str], cutoff: datetime | None
    ) -> Listing:
        """The list items of new or changed PRs by number, and the newest `updated_at` listed."""
        known = {} if sweep.refresh else await self.store.known_pulls(sweep.key)
        listing = Listing({}, None)
        pages = self.github.pulls(sweep.name, etags=etags, on_wait=sweep.report)
        async with closing(pages) as responses:
            async for response in responses:
                page = sweep.count(response)
                await sweep.report(
                    f"{sweep.name}: listing pull requests ({len(listing.changed)} changed)"
                )
                if page.status == 304:
                    break  # an unchanged page: everything from here on was swept before
                listing, reached_cutoff = read_page(page, cutoff, known, sweep.refresh, listing)
                if reached_cutoff:
                    break
        return listing

    async def _fetch_pulls(self, sweep: Sweep, listed: dict[int, dict[str, Any]]) -> None:
        sweep.current, sweep.total = 0, len(listed)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for number in listed:
            queue.put_nowait(number)

        async def worker() -> None:
            while not queue.empty():
                number = queue.get_nowait()
                try:
                    await self._fetch_pull(sweep, number)
                except GitHubNotFound as exc:
                    await self._skip_pull(sweep, listed[number], exc)
                sweep.current += 1
                await sweep.report(f"{sweep.name}#{number} ({sweep.current}/{sweep.total})")
                if sweep.current % 50 == 0:
                    await sweep.renew()

        await _run_all([worker() for _ in range(min(self.concurrency, len(listed)))])

    async def _fetch_pull(self, sweep: Sweep, number: int) -> None:
        base = f"/repos/{sweep.name}/pulls/{number}"
        # One PR's requests in sequence: the workers already keep the client's slots busy.
        detail = sweep.count(await self.github.get(base, on_wait=sweep.report))
        reviews = await self._collect(sweep, f"{base}/reviews")
        commits = await self._collect(sweep, f"{base}/commits")
        key = str(number)
        await self.store.put_raw(
            sweep.key,
            [
                RawRecord(RAW_PULL, key, detail.data, parse_time(detail.data.get("updated_at"))),
                RawRecord(RAW_REVIEWS, key, reviews),
                RawRecord(RAW_COMMITS, key, commits),
            ],
        )

    async def _skip_pull(self, sweep: Sweep, item: dict[str, Any], exc: GitHubNotFound) -> None:
        """The PR vanished between the list and its detail: keep what the list gave (over what was
        stored before) without its `updated_at`, so the next crawl sees it as changed."""
        number = int(item["number"])
        sweep.ctx.log.warning("fetch.pull_skipped", repository=sweep.name, number=number)
        sweep.skipped.append(SkippedPull(number, f"{exc.message} (listed, then gone)"))
        updated = parse_time(item.get("updated_at"))
        if updated is not None and (sweep.skipped_since is None or updated < sweep.skipped_since):
            sweep.skipped_since = updated
        stored = await self.store.raw_items(sweep.key, [RAW_PULL], keys=[str(number)])
        data = {**(stored[0].data if stored else {}), **item}
        await self.store.put_raw(sweep.key, [RawRecord(RAW_PULL, str(number), data, None)])

    async def _collect(self, sweep: Sweep, path: str) -> list[Any]:
        items: list[Any] = []
        async with closing(self.github.paginate(path, on_wait=sweep.report)) as pages:
            async for page in pages:
                sweep.requests += 1
                items.extend(page.data or ())
        return items


async def _run_all(coros: list[Awaitable[None]]) -> None:
    """Run `coros` concurrently; on failure cancel the rest and raise the first error itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(_as_coroutine(coro))
    except BaseExceptionGroup as errors:
        raise _first_error(errors) from None


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable


def _first_error(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
