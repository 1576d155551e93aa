"""Several GitHub tokens (of different users, or App installations): which one serves a repository.

Each configured token is a `Credential`: its REST client and, when the crawl uses GraphQL, its
GraphQL client, sharing the token's `TokenBudget` (keyed by the owner the token belongs to, learned
once through `GET /user`). A repository is served by the first token that can see it: the
remembered one first, then the others in the configured order; a token that answers 404, 403 or
401 for it is passed over. Which owner served a repository goes in the run output, never a token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog

from crawler_service.github.client import GitHubClient, GitHubStats
from crawler_service.github.errors import (
    GitHubForbidden,
    GitHubNotFound,
    GitHubPermanentError,
    GitHubUnauthorized,
)
from crawler_service.github.graphql import GraphQLClient, GraphQLStats
from crawler_service.github.owner import identify

log = structlog.get_logger("ghpulse.github")
T = TypeVar("T")
#: Answers meaning "not with this token": another token may see the repository.
_NO_ACCESS = (GitHubNotFound, GitHubForbidden, GitHubUnauthorized)


@dataclass(frozen=True)
class Credential:
    """One token's clients; they share the token's budget (`github.budget`)."""

    github: GitHubClient
    graphql: GraphQLClient | None = None

    @property
    def owner(self) -> str:
        """The rate-limit owner ("" until `identify` learned it)."""
        return self.github.budget.owner

    async def aclose(self) -> None:
        await self.github.aclose()
        if self.graphql is not None:
            await self.graphql.aclose()


class Credentials:
    """The configured tokens, in order (the first is the default)."""

    def __init__(self, credentials: Sequence[Credential]) -> None:
        if not credentials:
            raise ValueError("at least one credential (a client without a token counts)")
        self.all = tuple(credentials)
        #: The index of the token that served each target (a repository or an organization).
        self._serving: dict[str, int] = {}

    @property
    def first(self) -> Credential:
        return self.all[0]

    async def serve(
        self, target: str, attempt: Callable[[Credential], Awaitable[T]]
    ) -> tuple[Credential, T]:
        """`attempt(credential)` with the token that can see `target` (`owner/name`, or an
        organization): the one that served it last, else each in turn until one is not refused
        with 404/403/401. The credential's owner is known when `attempt` runs. Raises the first
        token's refusal when every token is refused."""
        key = target.lower()
        remembered = self._serving.get(key, 0)
        order = [remembered, *(i for i in range(len(self.all)) if i != remembered)]
        refusal: GitHubPermanentError | None = None
        for index in order:
            credential = self.all[index]
            await identify(credential.github)
            try:
                result = await attempt(credential)
            except _NO_ACCESS as exc:
                if len(self.all) == 1:
                    raise
                log.info("github.token_refused", target=target, owner=credential.owner)
                refusal = refusal or exc
                continue
            if self._serving.get(key) != index:
                self._serving[key] = index
                log.info("github.token_serves", target=target, owner=credential.owner)
            return credential, result
        assert refusal is not None
        raise refusal

    def rest_stats(self) -> GitHubStats:
        """The REST counters of every token, summed (remaining: the lowest)."""
        total = GitHubStats()
        for stats in (c.github.stats for c in self.all):
            total.requests += stats.requests
            total.not_modified += stats.not_modified
            total.by_status.update(stats.by_status)
            total.rate_limit_remaining = _lowest(total.rate_limit_remaining, stats)
        return total

    def graphql_stats(self) -> GraphQLStats | None:
        """The GraphQL counters of every token, summed (None: the crawl uses no GraphQL)."""
        clients = [c.graphql for c in self.all if c.graphql is not None]
        if not clients:
            return None
        total = GraphQLStats()
        for stats in (client.stats for client in clients):
            total.queries += stats.queries
            total.points += stats.points
            total.by_status.update(stats.by_status)
            total.rate_limit_remaining = _lowest(total.rate_limit_remaining, stats)
        return total

    async def aclose(self) -> None:
        for credential in self.all:
            await credential.aclose()


def _lowest(current: int | None, stats: GitHubStats | GraphQLStats) -> int | None:
    seen = [r for r in (current, stats.rate_limit_remaining) if r is not None]
    return min(seen, default=None)
