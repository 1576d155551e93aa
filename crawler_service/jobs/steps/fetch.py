"""The `fetch` step: incremental sweeps of each repository's pull requests into raw items.

Per repository, under its lease (`repository_locks`, so concurrent runs and replicas never sweep the
same repository at once): the repository object; PR list pages, most recently updated first, up to
the watermark of the last complete sweep minus `overlap`; detail, reviews and commits of every
new or changed PR; the releases. The watermark and the ETags of this sweep are stored together,
forward only, and only once everything is stored — a retry must never get a 304 for a page it did
not process. A refresh ignores both.

A pull request listed but gone (404) by the time its detail, reviews or commits are asked for is
skipped, not fatal: what the list gave is stored, the skip is reported in the output, and the next
crawl retries it (the sweep keeps neither the list pages' ETags nor a watermark past it).

Permanent failures (404, archived, no permission) are recorded per repository and the others go on;
a transient one (the client's retries spent) fails the attempt as retryable, and the next attempt
skips the repositories already finished (recorded per run in `fetch_progress`). Only when every
repository failed permanently does the step fail permanently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from common.jobs import CrawlSpec
from crawler_service.data.models import (
    RAW_COMMITS,
    RAW_PULL,
    RAW_RELEASE,
    RAW_REPOSITORY,
    RAW_REVIEWS,
    repo_key,
)
from crawler_service.data.records import FetchResult, RawRecord, SkippedPull
from crawler_service.data.store import CrawlerStore
from crawler_service.errors import PermanentError, TransientError
from crawler_service.github.client import GitHubClient, GitHubResponse
from crawler_service.github.errors import GitHubNotFound
from crawler_service.jobs.registry import Output, StepContext
from crawler_service.jobs.steps import closing, dedupe, parse_time
from crawler_service.jobs.steps.names import checked_name, valid_names


class RepositoryArchived(PermanentError):
    """The repository is archived."""

    def __init__(self, repository: str) -> None:
        super().__init__(f"{repository} is archived", code="GITHUB_ARCHIVED", repository=repository)


@dataclass
class _Sweep:
    """One repository's sweep in progress: progress position and the responses' bookkeeping."""

    ctx: StepContext
    name: str
    key: str
    refresh: bool
    current: int = 0
    total: int = 0
    requests: int = 0
    not_modified: int = 0
    etags: dict[str, str] = field(default_factory=dict)
    skipped: list[SkippedPull] = field(default_factory=list)
    #: The oldest `updated_at` among skipped PRs: the watermark must not pass it.
    skipped_since: datetime | None = None

    def count(self, response: GitHubResponse) -> GitHubResponse:
        self.requests += 1
        if response.status == 304:
            self.not_modified += 1
        elif response.etag:
            self.etags[response.url] = response.etag
        return response

    async def report(self, message: str) -> None:
        await self.ctx.progress(self.current, self.total, message)


@dataclass
class FetchStep:
    """See the module docstring."""

    store: CrawlerStore
    github: GitHubClient
    #: How far below the watermark the PR listing still reads (GitHub's updated_at is not atomic).
    overlap: timedelta = timedelta(minutes=5)
    lock_ttl: timedelta = timedelta(minutes=5)
    #: Seconds between attempts to take a repository lease another run holds.
    lock_poll: float = 1.0
    #: PRs fetched at once (the client bounds the requests in flight anyway).
    concurrency: int = 8
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    name: str = "fetch"

    async def run(self, ctx: StepContext) -> Output:
        spec = ctx.spec
        if not isinstance(spec, CrawlSpec):
            raise PermanentError(f"fetch cannot run for a {spec.kind} job")
        names = await self._resolve(ctx, spec)
        finished = {result.repository for result in await self.store.fetch_results(ctx.run_id)}
        for index, name in enumerate(names):
            if repo_key(name) in finished:
                continue
            await ctx.progress(index, len(names), name)
            with structlog.contextvars.bound_contextvars(repository=name):
                await self._fetch_repository(ctx, name, spec.refresh)
        await ctx.progress(len(names), len(names), "fetched")
        return await self._output(ctx, names)

    async def _resolve(self, ctx: StepContext, spec: CrawlSpec) -> list[str]:
        names = list(spec.repositories)
        if spec.organization:

            async def on_wait(message: str) -> None:
                await ctx.progress(0, 0, message)

            repos_of = self.github.org_repositories(spec.organization, on_wait=on_wait)
            async with closing(repos_of) as repos:
                listed = [repo async for repo in repos if not repo.get("archived")]
            names += valid_names(ctx, [str(repo.get("full_name", "")) for repo in listed])
        return dedupe(names)

    async def _output(self, ctx: StepContext, names: list[str]) -> Output:
        wanted = {repo_key(name) for name in names}
        results = [r for r in await self.store.fetch_results(ctx.run_id) if r.repository in wanted]
        failed = [r for r in results if not r.ok]
        if results and len(failed) == len(results):
            raise PermanentError(
                "every repository failed: "
                + "; ".join(f"{r.full_name}: {r.error}" for r in failed),
                code="ALL_REPOSITORIES_FAILED",
            )
        return {
            "repositories": [r.full_name for r in results if r.ok],
            "failed_repositories": [
                {"repository": r.full_name, "code": r.error_code, "error": r.error} for r in failed
            ],
            "skipped_pull_requests": [
                {"repository": r.full_name, "number": s.number, "reason": s.reason}
                for r in results
                for s in r.skipped
            ],
            "prs_updated": sum(r.prs_updated for r in results),
            "requests": sum(r.requests for r in results),
            "not_modified": sum(r.not_modified for r in results),
        }

    async def _fetch_repository(self, ctx: StepContext, name: str, refresh: bool) -> None:
        sweep = _Sweep(ctx, name, repo_key(name), refresh)
        await self._lock(sweep)
        try:
            await self._sweep(sweep)
        except PermanentError as exc:
            ctx.log.warning("fetch.repository_failed", repository=name, code=exc.code)
            await self.store.record_fetch(
                ctx.run_id,
                FetchResult(
                    sweep.key,
                    name,
                    ok=False,
                    error_code=exc.code,
                    error=exc.message,
                    requests=sweep.requests,
                    not_modified=sweep.not_modified,
                ),
            )
        finally:
            await self.store.unlock(sweep.key, ctx.run_id)

    async def _lock(self, sweep: _Sweep) -> None:
        # The run id is the holder, so a retried attempt of the same run takes its lease back.
        while not await self.store.try_lock(sweep.key, sweep.ctx.run_id, self.lock_ttl):
            await sweep.report(f"waiting for another run fetching {sweep.name}")
            await self.sleep(self.lock_poll)

    async def _renew(self, sweep: _Sweep) -> None:
        if not await self.store.try_lock(sweep.key, sweep.ctx.run_id, self.lock_ttl):
            raise TransientError(f"lost the fetch lease on {sweep.name}", code="LEASE_LOST")

    async def _sweep(self, sweep: _Sweep) -> None:
        state = await self.store.sweep_state(sweep.key)
        etags = {} if sweep.refresh else dict(state.etags)
        repo = await self._repository(sweep, etags)
        if repo.get("archived"):
            raise RepositoryArchived(sweep.name)
        sweep.name = checked_name(repo.get("full_name"), sweep.name)
        cutoff = (
            None if sweep.refresh or state.watermark is None else state.watermark - self.overlap
        )
        changed, newest = await self._changed_pulls(sweep, etags, cutoff)
        await self._fetch_pulls(sweep, changed)
        await self._releases(sweep, etags)
        if sweep.skipped_since is not None:
            newest = min(t for t in (newest, sweep.skipped_since) if t is not None)
        watermark = max((t for t in (newest, state.watermark) if t is not None), default=None)
        result = FetchResult(
            sweep.key,
            sweep.name,
            ok=True,
            prs_updated=len(changed) - len(sweep.skipped),
            requests=sweep.requests,
            not_modified=sweep.not_modified,
            skipped=tuple(sweep.skipped),
        )
        # Keep ETags of pages this sweep did not reach: they still describe those pages. After a
        # skip, drop the list pages' ETags so the next crawl lists (and retries) the skipped PRs.
        kept = {**etags, **sweep.etags}
        if sweep.skipped:
            pulls_url = self.github.url(f"/repos/{sweep.name}/pulls")
            kept = {url: tag for url, tag in kept.items() if not url.startswith(pulls_url + "?")}
        await self.store.complete_sweep(sweep.key, watermark, kept, result, sweep.ctx.run_id)
        sweep.ctx.log.info(
            "fetch.repository_done",
            repository=sweep.name,
            prs_updated=len(changed),
            requests=sweep.requests,
            not_modified=sweep.not_modified,
        )

    async def _repository(self, sweep: _Sweep, etags: dict[str, str]) -> dict[str, Any]:
        url = self.github.url(f"/repos/{sweep.name}")
        response = sweep.count(
            await self.github.get(url, etag=etags.get(url), on_wait=sweep.report)
        )
        if response.status != 304:
            await self.store.put_raw(sweep.key, [RawRecord(RAW_REPOSITORY, "", response.data)])
            return dict(response.data)
        stored = await self.store.raw_items(sweep.key, [RAW_REPOSITORY])
        if stored:
            return dict(stored[0].data)
        etags.pop(url, None)
        return await self._repository(sweep, etags)

    async def _changed_pulls(
        self, sweep: _Sweep, etags: dict[str, str], cutoff: datetime | None
    ) -> tuple[dict[int, dict[str, Any]], datetime | None]:
        """The list items of new or changed PRs by number, and the newest `updated_at` listed."""
        known = {} if sweep.refresh else await self.store.known_pulls(sweep.key)
        changed: dict[int, dict[str, Any]] = {}
        newest: datetime | None = None
        pages = self.github.pulls(sweep.name, etags=etags, on_wait=sweep.report)
        async with closing(pages) as listing:
            async for response in listing:
                page = sweep.count(response)
                await sweep.report(f"{sweep.name}: listing pull requests ({len(changed)} changed)")
                if page.status == 304:
                    break  # an unchanged page: everything from here on was swept before
                reached_cutoff = False
                for item in page.data:
                    updated = parse_time(item["updated_at"])
                    newest = updated if newest is None or (updated and updated > newest) else newest
                    if cutoff is not None and updated is not None and updated < cutoff:
                        reached_cutoff = True
                        break
                    if sweep.refresh or known.get(int(item["number"]), None) != updated:
                        changed[int(item["number"])] = item
                if reached_cutoff:
                    break
        return changed, newest

    async def _fetch_pulls(self, sweep: _Sweep, listed: dict[int, dict[str, Any]]) -> None:
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
                    await self._renew(sweep)

        await _run_all([worker() for _ in range(min(self.concurrency, len(listed)))])

    async def _fetch_pull(self, sweep: _Sweep, number: int) -> None:
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

    async def _skip_pull(self, sweep: _Sweep, item: dict[str, Any], exc: GitHubNotFound) -> None:
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

    async def _collect(self, sweep: _Sweep, path: str) -> list[Any]:
        items: list[Any] = []
        async with closing(self.github.paginate(path, on_wait=sweep.report)) as pages:
            async for page in pages:
                sweep.requests += 1
                items.extend(page.data or ())
        return items

    async def _releases(self, sweep: _Sweep, etags: dict[str, str]) -> None:
        pages = self.github.paginate(
            f"/repos/{sweep.name}/releases", etags=etags, on_wait=sweep.report
        )
        async with closing(pages) as listing:
            async for response in listing:
                page = sweep.count(response)
                if page.status == 304:
                    break
                records = [RawRecord(RAW_RELEASE, str(item["id"]), item) for item in page.data]
                await self.store.put_raw(sweep.key, records)


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
