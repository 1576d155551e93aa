"""Pull requests in bulk through GraphQL: pages of up to 100 PRs, most recently updated first, each
with its reviews and commits, down to the cutoff; a few points per page instead of three REST
requests per PR.

With `probe` (GHPULSE_GITHUB_API=auto) the first REST list page is asked for first, with its stored
ETag: a 304 means nothing changed since the last sweep and costs nothing, so no query is sent. A
changed page also says how many PRs lie above the cutoff, which sizes the first query. A PR with
more reviews or commits than one page holds is completed by follow-up queries (several PRs per
query). Answers are stored in the REST form (`crawler_service.github.queries`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crawler_service.data.models import RAW_COMMITS, RAW_PULL, RAW_REVIEWS
from crawler_service.data.records import RawRecord, SkippedPull
from crawler_service.data.store import CrawlerStore
from crawler_service.github import queries
from crawler_service.github.errors import GitHubNotFound
from crawler_service.github.graphql import GraphQLClient
from crawler_service.jobs.steps import closing, parse_time
from crawler_service.jobs.steps.pulls import Listing, RestPulls, read_page
from crawler_service.jobs.steps.sweep import Sweep, newer

#: GitHub's largest page.
MAX_PAGE = 100
#: (PR number, connection, cursor after which it continues).
Wanted = tuple[int, str, str]


@dataclass
class _PageOfPulls:
    nodes: list[dict[str, Any]]
    total: int
    end_cursor: str | None
    has_next: bool


@dataclass
class GraphQLPulls:
    """Fetches a repository's new or changed pull requests through GraphQL."""

    store: CrawlerStore
    rest: RestPulls
    graphql: GraphQLClient
    #: Probe with the first REST list page before querying (see the module docstring).
    probe: bool = True
    page_size: int = queries.PAGE_SIZE

    async def fetch(
        self, sweep: Sweep, etags: dict[str, str], cutoff: datetime | None
    ) -> tuple[int, datetime | None]:
        """Fetch and store what changed; (PRs stored, newest `updated_at` seen)."""
        known = {} if sweep.refresh else await self.store.known_pulls(sweep.key)
        first, newest = self.page_size, None
        if self.probe:
            probed = await self._probe(sweep, etags, cutoff, known)
            if probed is None:
                return 0, None
            first, newest, needed = probed
            if not needed:
                return 0, newest
        stored, seen = await self._pages(sweep, cutoff, known, first)
        return stored, newer(newest, seen)

    async def _probe(
        self,
        sweep: Sweep,
        etags: dict[str, str],
        cutoff: datetime | None,
        known: dict[int, datetime | None],
    ) -> tuple[int, datetime | None, bool] | None:
        """None when the first list page is unchanged (304); else the size of the first query,
        the newest `updated_at` listed and whether a query is needed at all."""
        pages = self.rest.github.pulls(sweep.name, etags=etags, on_wait=sweep.report)
        async with closing(pages) as responses:
            page = sweep.count(await anext(responses))
        if page.status == 304:
            return None
        listing, reached_cutoff = read_page(page, cutoff, known, sweep.refresh, Listing({}, None))
        if not (reached_cutoff or page.next_url is None):
            return self.page_size, listing.newest, True
        # Everything new is on this page: one query of that size (and one more, in case a PR
        # was updated meanwhile) reaches the cutoff, unless nothing changed at all.
        above = sum(
            1
            for item in page.data
            if cutoff is None or (parse_time(item["updated_at"]) or cutoff) >= cutoff
        )
        return min(above + 1, MAX_PAGE), listing.newest, bool(listing.changed)

    async def _pages(
        self,
        sweep: Sweep,
        cutoff: datetime | None,
        known: dict[int, datetime | None],
        first: int,
    ) -> tuple[int, datetime | None]:
        sweep.current, sweep.total = 0, 0
        after: str | None = None
        newest: datetime | None = None
        # Storing a page overlaps with asking for the next one; one store at a time, in order.
        storing: asyncio.Task[None] | None = None
        try:
            while True:
                page = await self._page(sweep, first, after)
                if cutoff is None:
                    sweep.total = page.total
                changed, reached_cutoff, newest = _changed(page, cutoff, known, sweep, newest)
                nodes = await self._complete(sweep, changed)
                if storing is not None:
                    await storing
                storing = asyncio.create_task(self._store(sweep, nodes))
                await sweep.renew()
                if reached_cutoff or not page.has_next:
                    await storing
                    return sweep.current, newest
                after, first = page.end_cursor, self.page_size
        finally:
            if storing is not None and not storing.done():
                storing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await storing

    async def _page(self, sweep: Sweep, first: int, after: str | None) -> _PageOfPulls:
        variables = queries.pull_requests_variables(sweep.name, first, after)
        answer = sweep.count_query(
            await self.graphql.query(queries.PULL_REQUESTS, variables, on_wait=sweep.report)
        )
        repository = answer.data.get("repository")
        if repository is None:
            raise GitHubNotFound(self.graphql.url, 200, f"no repository {sweep.name}")
        connection = repository["pullRequests"]
        info = connection["pageInfo"]
        return _PageOfPulls(
            [node for node in connection["nodes"] if node is not None],
            int(connection.get("totalCount") or 0),
            info.get("endCursor"),
            bool(info.get("hasNextPage")),
        )

    async def _complete(self, sweep: Sweep, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`nodes` with every review and commit, by follow-up queries where a page overflowed;
        PRs gone meanwhile are skipped (and left out)."""
        by_number = {int(node["number"]): node for node in nodes}
        wanted = [w for node in nodes for w in _overflowing(node)]
        while wanted := [w for w in wanted if w[0] in by_number]:
            batch, wanted = wanted[: queries.FOLLOW_UP_BATCH], wanted[queries.FOLLOW_UP_BATCH :]
            try:
                wanted += await self._follow_up(sweep, batch, by_number)
            except GitHubNotFound:
                # One of them is gone: find which, one at a time.
                wanted += await self._one_by_one(sweep, batch, by_number)
        return list(by_number.values())

    async def _one_by_one(
        self, sweep: Sweep, wanted: list[Wanted], by_number: dict[int, dict[str, Any]]
    ) -> list[Wanted]:
        more: list[Wanted] = []
        for item in wanted:
            if item[0] not in by_number:
                continue
            try:
                more += await self._follow_up(sweep, [item], by_number)
            except GitHubNotFound as exc:
                await self._skip(sweep, by_number.pop(item[0]), exc)
        return more

    async def _follow_up(
        self, sweep: Sweep, batch: list[Wanted], by_number: dict[int, dict[str, Any]]
    ) -> list[Wanted]:
        document, variables = queries.follow_up(sweep.name, batch)
        answer = sweep.count_query(
            await self.graphql.query(document, variables, on_wait=sweep.report)
        )
        repository = answer.data.get("repository") or {}
        more: list[Wanted] = []
        for number, connection, _cursor in batch:
            extra = (repository.get(f"pr{number}") or {}).get(connection)
            if extra is None:
                continue
            target = by_number[number][connection]
            target["nodes"] = [*target["nodes"], *extra["nodes"]]
            if extra["pageInfo"].get("hasNextPage"):
                more.append((number, connection, str(extra["pageInfo"]["endCursor"])))
        return more

    async def _skip(self, sweep: Sweep, node: dict[str, Any], exc: GitHubNotFound) -> None:
        """Like the REST path's skip: keep the PR without its `updated_at` so the next crawl
        fetches it again, and keep the watermark below it."""
        number = int(node["number"])
        sweep.ctx.log.warning("fetch.pull_skipped", repository=sweep.name, number=number)
        sweep.skipped.append(SkippedPull(number, f"{exc.message} (listed, then gone)"))
        updated = parse_time(node.get("updatedAt"))
        if updated is not None and (sweep.skipped_since is None or updated < sweep.skipped_since):
            sweep.skipped_since = updated
        record = RawRecord(RAW_PULL, str(number), queries.pull(node), None)
        await self.store.put_raw(sweep.key, [record])

    async def _store(self, sweep: Sweep, nodes: list[dict[str, Any]]) -> None:
        records: list[RawRecord] = []
        for node in nodes:
            key = str(int(node["number"]))
            records += [
                RawRecord(RAW_PULL, key, queries.pull(node), parse_time(node["updatedAt"])),
                RawRecord(RAW_REVIEWS, key, [queries.review(r) for r in _nodes(node, "reviews")]),
                RawRecord(RAW_COMMITS, key, [queries.commit(c) for c in _nodes(node, "commits")]),
            ]
        await self.store.put_raw(sweep.key, records)
        sweep.current += len(nodes)
        await sweep.report(f"{sweep.name}: {sweep.current} pull requests via GraphQL")


def _changed(
    page: _PageOfPulls,
    cutoff: datetime | None,
    known: dict[int, datetime | None],
    sweep: Sweep,
    newest: datetime | None,
) -> tuple[list[dict[str, Any]], bool, datetime | None]:
    """The page's new or changed PRs above the cutoff, whether it reached the cutoff, and the
    newest `updated_at` seen so far."""
    changed: list[dict[str, Any]] = []
    for node in page.nodes:
        updated = parse_time(node["updatedAt"])
        newest = newer(newest, updated)
        if cutoff is not None and updated is not None and updated < cutoff:
            return changed, True, newest
        if sweep.refresh or known.get(int(node["number"])) != updated:
            changed.append(node)
    return changed, False, newest


def _nodes(node: dict[str, Any], connection: str) -> list[dict[str, Any]]:
    return [n for n in (node.get(connection) or {}).get("nodes") or () if n is not None]


def _overflowing(node: dict[str, Any]) -> list[Wanted]:
    wanted = []
    for connection in ("reviews", "commits"):
        info = (node.get(connection) or {}).get("pageInfo") or {}
        if info.get("hasNextPage"):
            wanted.append((int(node["number"]), connection, str(info["endCursor"])))
    return wanted
