"""An async client for GitHub's GraphQL API, as the crawl uses it beside the REST client.

Its endpoint is `<api url>/graphql`, or `https://host/api/graphql` for GitHub Enterprise's
`https://host/api/v3`. GraphQL has its own budget of points per hour: every query asks for
`rateLimit { cost remaining resetAt }`, and the client tracks it like the REST client tracks its
requests. It waits for the reset when the budget is spent (a `RATE_LIMITED` error, or a remaining
budget below the last query's cost), backs off on secondary limits, retries 5xx answers, resets,
timeouts and answers with `errors` (partial data is never returned), and raises the REST client's
errors, which never contain the token.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from common.lifecycle import Closing
from common.logging import register_secret
from crawler_service.github.budget import TokenBudget, WaitReporter
from crawler_service.github.client import USER_AGENT
from crawler_service.github.errors import (
    GitHubForbidden,
    GitHubInvalid,
    GitHubNotFound,
    GitHubUnavailable,
    permanent_error,
)
from crawler_service.github.ratelimit import (
    RESET_MARGIN,
    Action,
    GraphQLProblem,
    backoff,
    decide,
    graphql_problem,
    header_int,
)

log = structlog.get_logger("ghpulse.github")

#: Primary-limit waits per query before giving up (see the REST client's MAX_PRIMARY_WAITS).
MAX_PRIMARY_WAITS = 3
#: Wait for a RATE_LIMITED answer that says nothing about its reset.
DEFAULT_RESET_WAIT = 60.0
_RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def graphql_url(api_url: str) -> str:
    """The GraphQL endpoint of a REST base URL (GitHub Enterprise: `/api/v3` -> `/api/graphql`)."""
    parts = urlsplit(api_url.rstrip("/"))
    if parts.path.endswith("/api/v3"):
        path = parts.path.removesuffix("/v3") + "/graphql"
    else:
        path = parts.path + "/graphql"
    return urlunsplit(parts._replace(path=path))


@dataclass(frozen=True)
class GraphQLAnswer:
    """The `data` of a complete answer and what the query cost."""

    data: dict[str, Any]
    cost: int
    remaining: int | None


@dataclass
class GraphQLStats:
    """Counters of one client: every query sent (retries included) and the points spent."""

    queries: int = 0
    points: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    rate_limit_remaining: int | None = None


@dataclass
class _Spent:
    retries: int = 0
    primary_waits: int = 0


class GraphQLClient(Closing):
    """A GitHub GraphQL client; `async with GraphQLClient(api_url, token) as graphql:`."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        concurrency: int = 4,
        timeout: float = 30.0,
        max_retries: int = 5,
        retry_backoff: float = 1.0,
        secondary_backoff: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: TokenBudget | None = None,
    ) -> None:
        register_secret(token)
        #: The owner's limits, shared with the REST client: secondary pauses hold for both.
        self.budget = budget or TokenBudget(sleep=sleep, clock=clock)
        self.url = graphql_url(api_url)
        self._max_retries = max_retries
        self._retry_backoff = retry_backoff
        self._secondary_backoff = secondary_backoff
        self._sleep = sleep
        self._clock = clock
        self._semaphore = asyncio.Semaphore(concurrency)
        #: Epoch seconds of the reset once an answer said the budget cannot pay another query.
        self._reset_at: float | None = None
        self.stats = GraphQLStats()
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def query(
        self, document: str, variables: Mapping[str, Any], *, on_wait: WaitReporter | None = None
    ) -> GraphQLAnswer:
        """Run one query and return its complete data, waiting out limits and retrying failures.

        Raises `GitHubNotFound`/`GitHubForbidden` for NOT_FOUND/FORBIDDEN errors, `GitHubInvalid`
        for a query GitHub refuses, another `GitHubPermanentError` for 4xx answers, and
        `GitHubUnavailable` once the retries are spent.
        """
        payload = {"query": document, "variables": dict(variables)}
        spent = _Spent()
        while True:
            await self._wait_for_reset(on_wait)
            answer = await self._try_once(payload, spent, on_wait)
            if answer is not None:
                return answer

    # -- internals ------------------------------------------------------------------------------

    async def _try_once(
        self, payload: Mapping[str, Any], spent: _Spent, on_wait: WaitReporter | None
    ) -> GraphQLAnswer | None:
        try:
            response = await self._send(payload, on_wait)
        except _RETRYABLE_ERRORS as exc:
            delay = backoff(self._retry_backoff, spent.retries)
            await self._retry(None, type(exc).__name__, spent, delay, on_wait)
            return None
        status = response.status_code
        decision = decide(
            status,
            response.headers,
            response.text if status >= 400 else "",
            now=self._clock(),
            retries=spent.retries,
            secondary_backoff=self._secondary_backoff,
        )
        if decision.action is Action.WAIT_PRIMARY:
            await self._wait_primary(status, decision.delay, spent, on_wait)
        elif decision.action is Action.WAIT_SECONDARY:
            await self.budget.pause(self._clock() + decision.delay)
            await self._retry(status, "secondary rate limit", spent, decision.delay, on_wait)
        elif decision.action is Action.RETRY:
            delay = backoff(self._retry_backoff, spent.retries)
            await self._retry(status, f"HTTP {status}", spent, delay, on_wait)
        elif decision.action is Action.FAIL:
            raise permanent_error(self.url, status, _message(response))
        else:
            return await self._answer(response, spent, on_wait)
        return None

    async def _answer(
        self, response: httpx.Response, spent: _Spent, on_wait: WaitReporter | None
    ) -> GraphQLAnswer | None:
        """The answer of a 200, or None after waiting to send the query again."""
        try:
            body = response.json()
        except ValueError:
            body = {"errors": [{"message": "the answer is not JSON"}], "data": None}
        problem = graphql_problem(body)
        if problem is None:
            return self._complete(body)
        message = _errors(body)
        if problem is GraphQLProblem.RATE_LIMITED:
            delay = self._reset_delay(response.headers)
            await self._wait_primary(response.status_code, delay, spent, on_wait)
        elif problem is GraphQLProblem.SECONDARY:
            retry_after = header_int(response.headers, "retry-after")
            delay = (
                float(retry_after)
                if retry_after is not None
                else self._secondary_backoff * 2**spent.retries
            )
            await self.budget.pause(self._clock() + delay)
            await self._retry(200, "secondary rate limit", spent, delay, on_wait)
        elif problem is GraphQLProblem.TRANSIENT:
            delay = backoff(self._retry_backoff, spent.retries)
            await self._retry(200, f"GraphQL errors: {message}", spent, delay, on_wait)
        else:
            raise _PERMANENT[problem](self.url, 200, message)
        return None

    def _complete(self, body: Mapping[str, Any]) -> GraphQLAnswer:
        data = dict(body.get("data") or {})
        rate = data.get("rateLimit") or {}
        cost = int(rate.get("cost") or 0)
        remaining = rate.get("remaining")
        self.stats.points += cost
        if remaining is not None:
            remaining = int(remaining)
            self.stats.rate_limit_remaining = remaining
            if remaining < max(cost, 1) and rate.get("resetAt"):
                # The next query would be refused: wait for the reset before sending it.
                self._reset_at = _epoch(str(rate["resetAt"]))
        return GraphQLAnswer(data, cost, remaining)

    async def _send(
        self, payload: Mapping[str, Any], on_wait: WaitReporter | None
    ) -> httpx.Response:
        async with self._semaphore, self.budget.sending(self.url, on_wait):
            self.stats.queries += 1
            response = await self._http.post(self.url, json=payload)
        self.stats.by_status[response.status_code] += 1
        remaining = header_int(response.headers, "x-ratelimit-remaining")
        if remaining is not None:
            self.stats.rate_limit_remaining = remaining
        return response

    def _reset_delay(self, headers: Mapping[str, str]) -> float:
        reset = header_int(headers, "x-ratelimit-reset")
        if reset is None:
            return DEFAULT_RESET_WAIT
        return max(reset - self._clock(), 0.0) + RESET_MARGIN

    async def _wait_for_reset(self, on_wait: WaitReporter | None) -> None:
        reset_at = self._reset_at
        if reset_at is None:
            return
        delay = reset_at + RESET_MARGIN - self._clock()
        if delay > 0:
            log.warning("github.rate_limited", url=self.url, limit="graphql", delay=delay)
            if on_wait is not None:
                await on_wait(f"GraphQL rate limited; waiting {delay:.0f}s for reset")
            await self._sleep(delay)
        if self._reset_at == reset_at:
            self._reset_at = None

    async def _wait_primary(
        self, status: int, delay: float, spent: _Spent, on_wait: WaitReporter | None
    ) -> None:
        spent.primary_waits += 1
        if spent.primary_waits > MAX_PRIMARY_WAITS:
            raise GitHubUnavailable(self.url, status, "rate limit", spent.retries + 1)
        log.warning(
            "github.rate_limited", url=self.url, status=status, limit="graphql", delay=delay
        )
        if on_wait is not None:
            await on_wait(f"GraphQL rate limited; waiting {delay:.0f}s for reset")
        await self._sleep(delay)

    async def _retry(
        self,
        status: int | None,
        reason: str,
        spent: _Spent,
        delay: float,
        on_wait: WaitReporter | None,
    ) -> None:
        """Wait before the next retry, or raise `GitHubUnavailable` when the retries are spent."""
        if spent.retries >= self._max_retries:
            raise GitHubUnavailable(self.url, status, reason, spent.retries + 1)
        spent.retries += 1
        secondary = reason == "secondary rate limit"
        event = "github.rate_limited" if secondary else "github.retry"
        log.warning(
            event, url=self.url, status=status, reason=reason, retry=spent.retries, delay=delay
        )
        if on_wait is not None:
            await on_wait(
                f"GitHub GraphQL {reason}; retrying in {delay:.0f}s "
                f"({spent.retries}/{self._max_retries})"
            )
        await self._sleep(delay)


_PERMANENT = {
    GraphQLProblem.NOT_FOUND: GitHubNotFound,
    GraphQLProblem.FORBIDDEN: GitHubForbidden,
    GraphQLProblem.INVALID: GitHubInvalid,
}


def _errors(body: Mapping[str, Any]) -> str:
    errors = body.get("errors") or []
    return "; ".join(str(e.get("message") or "") for e in errors if isinstance(e, dict))[:500]


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
