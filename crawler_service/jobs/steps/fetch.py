"""The `fetch` step: incremental sweeps of each repository's pull requests into raw items.

Per repository, under its lease (`repository_locks`, so concurrent runs and replicas never sweep the
same repository at once), with the configured token that can see it (`Credentials.serve`): the
repository object; the new or changed pull requests, most recently updated first, down to the
watermark of the last complete sweep minus `overlap` — through REST (`pulls`: list pages, then
detail, reviews and commits per PR) or through GraphQL (`bulk`: pages of PRs with their reviews and
commits, after a free conditional probe of the first REST list page); the releases. The watermark
and the ETags of this sweep are stored together, forward only, and only once everything is stored —
a retry must never get a 304 for a page it did not process. A refresh ignores both.

A repository whose lease another run holds is left for later; once the others are swept, the run
is handed back (`HandBack`), to be dispatched again after `busy_retry` seconds: it does not wait in
a crawler slot.

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
from typing import Any, Protocol

import structlog

from common.jobs import CrawlSpec
from crawler_service.data.models import RAW_RELEASE, RAW_REPOSITORY, repo_key
from crawler_service.data.records import FetchResult, RawRecord
from crawler_service.data.store import CrawlerStore
from crawler_service.errors import HandBack, PermanentError, TransientError
from crawler_service.github.client import GitHubClient
from crawler_service.github.errors import GitHubInvalid
from crawler_service.github.graphql import GraphQLClient
from crawler_service.github.tokens import Credential, Credentials
from crawler_service.jobs.registry import Output, StepContext
from crawler_service.jobs.steps import closing, dedupe
from crawler_service.jobs.steps.bulk import GraphQLPulls
from crawler_service.jobs.steps.lease import kept_alive
from crawler_service.jobs.steps.names import checked_name, valid_names
from crawler_service.jobs.steps.pulls import RestPulls
from crawler_service.jobs.steps.sweep import Sweep

#: GHPULSE_GITHUB_API values.
API_AUTO, API_GRAPHQL, API_REST = "auto", "graphql", "rest"


class PullFetcher(Protocol):
    """One way of fetching a repository's new or changed pull requests into raw items."""

    async def fetch(
        self, sweep: Sweep, etags: dict[str, str], cutoff: datetime | None
    ) -> tuple[int, datetime | None]:
        """Store the raw items of PRs updated since `cutoff` (all for None) that changed since
        they were stored; returns how many were stored and the newest `updated_at` seen."""


class RepositoryArchived(PermanentError):
    """The repository is archived."""

    def __init__(self, repository: str) -> None:
        super().__init__(f"{repository} is archived", code="GITHUB_ARCHIVED", repository=repository)


@dataclass
class FetchStep:
    """See the module docstring."""

    store: CrawlerStore
    github: GitHubClient
    #: How far below the watermark the PR listing still reads (GitHub's updated_at is not atomic).
    overlap: timedelta = timedelta(minutes=5)
    lock_ttl: timedelta = timedelta(minutes=5)
    #: Seconds before a run handed back because another run holds one of its repositories is
    #: dispatched again (GHPULSE_FETCH_BUSY_RETRY).
    busy_retry: float = 15.0
    #: PRs fetched at once through REST (the client bounds the requests in flight anyway).
    concurrency: int = 8
    #: The sleep between renewals of a repository's lease (every third of `lock_ttl`).
    lease_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: The GraphQL client (when a token is configured); None fetches through REST only.
    graphql: GraphQLClient | None = None
    #: GHPULSE_GITHUB_API: auto (GraphQL behind a free REST probe), graphql, or rest.
    api: str = API_AUTO
    #: Every configured token (`github` and `graphql` are the first's); None: only that one.
    credentials: Credentials | None = None
    name: str = "fetch"
    tokens: Credentials = field(init=False)
    _pulls: dict[Credential, PullFetcher] = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.credentials or Credentials([Credential(self.github, self.graphql)])
        self._pulls = {credential: self._fetcher(credential) for credential in self.tokens.all}

    def _fetcher(self, credential: Credential) -> PullFetcher:
        rest = RestPulls(self.store, credential.github, self.concurrency)
        if credential.graphql is None or self.api == API_REST:
            return rest
        return GraphQLPulls(self.store, rest, credential.graphql, probe=self.api == API_AUTO)

    async def run(self, ctx: StepContext) -> Output:
        spec = ctx.spec
        if not isinstance(spec, CrawlSpec):
            raise PermanentError(f"fetch cannot run for a {spec.kind} job")
        names = await self._resolve(ctx, spec)
        finished = {result.repository for result in await self.store.fetch_results(ctx.run_id)}
        # A repository another run is sweeping does not hold up the others; once they are done,
        # the run is handed back rather than wait in a crawler slot (the next attempt skips the
        # repositories finished here).
        held: list[str] = []
        for index, name in enumerate(names):
            if repo_key(name) in finished:
                continue
            await ctx.progress(index, len(names), name)
            if not await self._fetch_repository(ctx, name, spec.refresh):
                held.append(name)
        if held:
            raise self._busy(ctx, held)
        await ctx.progress(len(names), len(names), "fetched")
        return await self._output(ctx, names)

    async def _resolve(self, ctx: StepContext, spec: CrawlSpec) -> list[str]:
        names = list(spec.repositories)
        if spec.organization:

            async def on_wait(message: str) -> None:
                await ctx.progress(0, 0, message)

            async def listing(credential: Credential) -> list[dict[str, Any]]:
                github = credential.github
                repos_of = github.org_repositories(spec.organization, on_wait=on_wait)
                async with closing(repos_of) as repos:
                    return [repo async for repo in repos if not repo.get("archived")]

            _credential, listed = await self.tokens.serve(spec.organization, listing)
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
            "graphql_queries": sum(r.graphql_queries for r in results),
            "graphql_points": sum(r.graphql_points for r in results),
            # Which rate-limit owner (a login, never a token) served each repository.
            "github_owners": {r.full_name: r.github_owner for r in results if r.github_owner},
        }

    def _busy(self, ctx: StepContext, held: list[str]) -> HandBack:
        ctx.log.info("fetch.repositories_held", repositories=held, retry_after=self.busy_retry)
        return HandBack(
            f"another run is fetching {', '.join(held)}; trying again in {self.busy_retry:g}s",
            retry_after=self.busy_retry,
            code="REPOSITORY_BUSY",
            repositories=", ".join(held),
        )

    async def _fetch_repository(self, ctx: StepContext, name: str, refresh: bool) -> bool:
        """Sweep one repository under its lease; False (nothing done) when another run holds
        the lease."""
        with structlog.contextvars.bound_contextvars(repository=name):
            sweep = Sweep(ctx, name, repo_key(name), refresh, renew=lambda: self._renew(sweep))
            # The run id is the holder, so a retried attempt of the same run takes it back.
            if not await self.store.try_lock(sweep.key, ctx.run_id, self.lock_ttl):
                return False
            await self._sweep_leased(sweep)
            return True

    async def _sweep_leased(self, sweep: Sweep) -> None:
        ctx, name = sweep.ctx, sweep.name
        holder, ttl = ctx.run_id, self.lock_ttl
        interval = ttl.total_seconds() / 3
        try:
            async with kept_alive(
                name,
                lambda: self.store.try_lock(sweep.key, holder, ttl),
                interval,
                self.lease_sleep,
            ):
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
                    graphql_queries=sweep.graphql_queries,
                    graphql_points=sweep.graphql_points,
                    github_owner=sweep.github_owner or self.tokens.first.owner or None,
                ),
            )
        finally:
            await self.store.unlock(sweep.key, ctx.run_id)

    async def _renew(self, sweep: Sweep) -> None:
        if not await self.store.try_lock(sweep.key, sweep.ctx.run_id, self.lock_ttl):
            raise TransientError(f"lost the fetch lease on {sweep.name}", code="LEASE_LOST")

    async def _sweep(self, sweep: Sweep) -> None:
        state = await self.store.sweep_state(sweep.key)
        etags = {} if sweep.refresh else dict(state.etags)
        credential, repo = await self.tokens.serve(
            sweep.name, lambda credential: self._repository(credential.github, sweep, etags)
        )
        owner = sweep.github_owner = credential.owner
        if repo.get("archived"):
            raise RepositoryArchived(sweep.name)
        sweep.name = checked_name(repo.get("full_name"), sweep.name)
        cutoff = (
            None if sweep.refresh or state.watermark is None else state.watermark - self.overlap
        )
        prs_updated, newest = await self._fetch_pulls(credential, sweep, etags, cutoff)
        await self._releases(credential.github, sweep, etags)
        if sweep.skipped_since is not None:
            newest = min(t for t in (newest, sweep.skipped_since) if t is not None)
        watermark = max((t for t in (newest, state.watermark) if t is not None), default=None)
        result = FetchResult(
            sweep.key,
            sweep.name,
            ok=True,
            prs_updated=prs_updated,
            requests=sweep.requests,
            not_modified=sweep.not_modified,
            skipped=tuple(sweep.skipped),
            graphql_queries=sweep.graphql_queries,
            graphql_points=sweep.graphql_points,
            github_owner=owner,
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
            prs_updated=prs_updated,
            requests=sweep.requests,
            not_modified=sweep.not_modified,
            graphql_queries=sweep.graphql_queries,
            graphql_points=sweep.graphql_points,
        )

    async def _fetch_pulls(
        self, credential: Credential, sweep: Sweep, etags: dict[str, str], cutoff: datetime | None
    ) -> tuple[int, datetime | None]:
        pulls = self._pulls[credential]
        try:
            return await pulls.fetch(sweep, etags, cutoff)
        except GitHubInvalid as exc:
            # `auto` falls back to REST when GitHub refuses the query itself (an older GitHub
            # Enterprise without a field we ask for, say); `graphql` was asked for explicitly.
            graphql = credential.graphql
            refused = graphql is not None and exc.url == graphql.url
            if not (refused and self.api == API_AUTO and isinstance(pulls, GraphQLPulls)):
                raise
            sweep.ctx.log.warning(
                "fetch.graphql_refused", repository=sweep.name, error=exc.github_message
            )
            return await pulls.rest.fetch(sweep, etags, cutoff)

    async def _repository(
        self, github: GitHubClient, sweep: Sweep, etags: dict[str, str]
    ) -> dict[str, Any]:
        url = github.url(f"/repos/{sweep.name}")
        response = sweep.count(await github.get(url, etag=etags.get(url), on_wait=sweep.report))
        if response.status != 304:
            await self.store.put_raw(sweep.key, [RawRecord(RAW_REPOSITORY, "", response.data)])
            return dict(response.data)
        stored = await self.store.raw_items(sweep.key, [RAW_REPOSITORY])
        if stored:
            return dict(stored[0].data)
        etags.pop(url, None)
        return await self._repository(github, sweep, etags)

    async def _releases(self, github: GitHubClient, sweep: Sweep, etags: dict[str, str]) -> None:
        pages = github.paginate(f"/repos/{sweep.name}/releases", etags=etags, on_wait=sweep.report)
        async with closing(pages) as listing:
            async for response in listing:
                page = sweep.count(response)
                if page.status == 304:
                    break
                records = [RawRecord(RAW_RELEASE, str(item["id"]), item) for item in page.data]
                await self.store.put_raw(sweep.key, records)
