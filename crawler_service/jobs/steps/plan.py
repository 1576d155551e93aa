"""The `plan` step of a fan-out parent that names an organization (see `common.jobs.fanout`):
the repositories to create child runs for, listed afresh on every run. A crawl lists the
organization's non-archived repositories on GitHub; a recalculate (which never calls GitHub) the
ones stored. The repositories the job also names come first."""

from __future__ import annotations

from dataclasses import dataclass

from common.jobs import CrawlSpec, RecalculateSpec
from common.jobs.fanout import PLAN_STEP
from crawler_service.data.store import CrawlerStore
from crawler_service.errors import PermanentError
from crawler_service.github.client import GitHubClient
from crawler_service.jobs.registry import Output, StepContext
from crawler_service.jobs.steps import closing, dedupe
from crawler_service.jobs.steps.names import valid_names


@dataclass
class PlanStep:
    """See the module docstring."""

    store: CrawlerStore
    github: GitHubClient
    name: str = PLAN_STEP

    async def run(self, ctx: StepContext) -> Output:
        spec = ctx.spec
        if not isinstance(spec, CrawlSpec | RecalculateSpec):
            raise PermanentError(f"plan cannot run for a {spec.kind} job")
        await ctx.progress(0, 0, f"listing the repositories of {spec.organization}")
        if isinstance(spec, CrawlSpec):
            listed = await self._on_github(ctx, spec.organization)
        else:
            listed = await self.store.repositories_of(spec.organization)
        names = dedupe([*spec.repositories, *listed])
        await ctx.progress(len(names), len(names), f"{len(names)} repositories")
        return {"repositories": names}

    async def _on_github(self, ctx: StepContext, organization: str) -> list[str]:
        async def on_wait(message: str) -> None:
            await ctx.progress(0, 0, message)

        repos_of = self.github.org_repositories(organization, on_wait=on_wait)
        async with closing(repos_of) as repos:
            listed = [repo async for repo in repos if not repo.get("archived")]
        return valid_names(ctx, [str(repo.get("full_name", "")) for repo in listed])
