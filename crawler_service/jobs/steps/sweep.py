"""One repository's sweep in progress, shared by the fetch step and its two ways of fetching pull
requests (REST in `pulls`, GraphQL in `bulk`): what it cost, the ETags it saw, what it skipped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from crawler_service.data.records import SkippedPull
from crawler_service.github.client import GitHubResponse
from crawler_service.github.graphql import GraphQLAnswer
from crawler_service.jobs.registry import StepContext


@dataclass
class Sweep:
    """Progress position and the answers' bookkeeping of one repository's sweep."""

    ctx: StepContext
    name: str
    key: str
    refresh: bool
    #: Renews the repository's fetch lease; raises when another run took it.
    renew: Callable[[], Awaitable[None]]
    current: int = 0
    total: int = 0
    requests: int = 0
    not_modified: int = 0
    graphql_queries: int = 0
    graphql_points: int = 0
    etags: dict[str, str] = field(default_factory=dict)
    skipped: list[SkippedPull] = field(default_factory=list)
    #: The oldest `updated_at` among skipped PRs: the watermark must not pass it.
    skipped_since: datetime | None = None
    #: The rate-limit owner of the token serving the repository (a login, never a token).
    github_owner: str = ""

    def count(self, response: GitHubResponse) -> GitHubResponse:
        """Count a REST answer and keep its ETag (a 304 keeps the stored one)."""
        self.requests += 1
        if response.status == 304:
            self.not_modified += 1
        elif response.etag:
            self.etags[response.url] = response.etag
        return response

    def count_query(self, answer: GraphQLAnswer) -> GraphQLAnswer:
        """Count a GraphQL query and the points it cost."""
        self.graphql_queries += 1
        self.graphql_points += answer.cost
        return answer

    async def report(self, message: str) -> None:
        await self.ctx.progress(self.current, self.total, message)


def newer(newest: datetime | None, updated: datetime | None) -> datetime | None:
    """The later of two optional times."""
    if updated is None:
        return newest
    return updated if newest is None or updated > newest else newest
