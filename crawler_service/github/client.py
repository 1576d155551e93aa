"""An async client for the GitHub REST API, as the crawl uses it.

It joins paths onto the configured base URL (`https://api.github.com`, or GitHub Enterprise's
`https://host/api/v3`), follows Link pagination, makes conditional requests with stored ETags,
waits out primary and secondary rate limits, retries 5xx answers, resets and timeouts with jittered
backoff, and bounds the number of requests in flight. Failures surface as the permanent and
transient errors of `crawler_service.github.errors`, which never contain the token.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from common.lifecycle import Closing
from common.logging import register_secret
from crawler_service.github.budget import TokenBudget, WaitReporter
from crawler_service.github.errors import (
    GitHubForbidden,
    GitHubForeignLink,
    GitHubGone,
    GitHubInvalid,
    GitHubNotFound,
    GitHubPermanentError,
    GitHubUnauthorized,
    GitHubUnavailable,
    permanent_error,
)
from crawler_service.github.ratelimit import Action, backoff, decide, header_int

__all__ = [
    "GitHubClient",
    "GitHubForbidden",
    "GitHubGone",
    "GitHubInvalid",
    "GitHubNotFound",
    "GitHubPermanentError",
    "GitHubResponse",
    "GitHubStats",
    "GitHubUnauthorized",
    "GitHubUnavailable",
    "WaitReporter",
]

log = structlog.get_logger("ghpulse.github")

Params = Mapping[str, str | int]

USER_AGENT = "ghpulse/0.1 (+https://github.com/ghpulse/ghpulse)"
API_VERSION = "2022-11-28"
PER_PAGE = 100
#: Primary-limit waits per request before giving up (GitHub refills the budget at each reset, so
#: more than one wait means the clock or the server misbehaves).
MAX_PRIMARY_WAITS = 3
SECONDARY = "secondary rate limit"
_RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class GitHubResponse:
    """One answer of GitHub."""

    #: 200, or 304 when an If-None-Match etag matched.
    status: int
    #: Parsed JSON: a list for list endpoints, a dict for objects; None on 304.
    data: Any
    etag: str | None
    #: The Link header's rel="next" URL, or None on the last page.
    next_url: str | None
    #: The absolute URL requested (never holds the token).
    url: str


@dataclass
class GitHubStats:
    """Counters of one client: every HTTP request sent, retries included."""

    requests: int = 0
    not_modified: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    rate_limit_remaining: int | None = None


class GitHubClient(Closing):
    """A GitHub REST client; use it as `async with GitHubClient(...) as github:`."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
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
        #: Whether requests carry a token (else GitHub limits them per IP address).
        self.authenticated = bool(token)
        self._base = base_url.rstrip("/")
        #: The only origin the token is sent to (pagination links elsewhere are refused).
        self._origin = _origin(httpx.URL(self._base))
        self._max_retries = max_retries
        self._retry_backoff = retry_backoff
        self._secondary_backoff = secondary_backoff
        self._sleep = sleep
        self._clock = clock
        self._semaphore = asyncio.Semaphore(concurrency)
        #: The owner's limits, shared with the GraphQL client of the same token (and, through
        #: the database, with the fleet): every request waits for it in `_send`.
        self.budget = budget or TokenBudget(sleep=sleep, clock=clock)
        self.stats = GitHubStats()
        self._http = httpx.AsyncClient(
            headers=_headers(token),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=True,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- core -----------------------------------------------------------------------------------

    def url(self, path_or_url: str, params: Params | None = None) -> str:
        """The absolute URL of a path (joined onto the base URL) or of a URL, with `params`."""
        if path_or_url.startswith(("http://", "https://")):
            url = httpx.URL(path_or_url)
            if _origin(url) != self._origin:
                raise GitHubForeignLink(path_or_url[:200], self._origin)
            return str(url.copy_merge_params(dict(params)) if params else url)
        url = httpx.URL(f"{self._base}/{path_or_url.lstrip('/')}")
        # Sorted, so that the first page of a listing has the same URL (and stored etag) every run.
        return str(url.copy_merge_params(dict(sorted(params.items()))) if params else url)

    async def get(
        self,
        path_or_url: str,
        params: Params | None = None,
        *,
        etag: str | None = None,
        on_wait: WaitReporter | None = None,
    ) -> GitHubResponse:
        """GET one resource, waiting out rate limits and retrying transient failures.

        Raises a `GitHubPermanentError` subclass for 4xx answers that are not rate limits, and
        `GitHubUnavailable` once `max_retries` retries are spent.
        """
        url = self.url(path_or_url, params)
        spent = _Spent()
        while True:
            response = await self._try_once(url, etag, spent, on_wait)
            if response is not None:
                return _result(url, response, etag)

    async def paginate(
        self,
        path: str,
        params: Params | None = None,
        *,
        etags: Mapping[str, str] | None = None,
        on_wait: WaitReporter | None = None,
    ) -> AsyncIterator[GitHubResponse]:
        """Yield every page of a listing (per_page=100), following the Link header.

        `etags` maps a page URL (as yielded in `.url`) to its stored etag; a page that did not
        change is yielded with status 304 and data None, so the caller can decide to stop. A 304
        carries the Link header when the server sends one, and pagination goes on through it.
        """
        etags = etags or {}
        url: str | None = self.url(path, {**(params or {}), "per_page": PER_PAGE})
        while url is not None:
            page = await self.get(url, etag=etags.get(url), on_wait=on_wait)
            yield page
            url = page.next_url

    # -- convenience ----------------------------------------------------------------------------

    async def repository(
        self, full_name: str, *, on_wait: WaitReporter | None = None
    ) -> dict[str, Any]:
        """`GET /repos/{owner}/{repo}`."""
        response = await self.get(_repo_path(full_name), on_wait=on_wait)
        return dict(response.data)

    async def org_repositories(
        self, org: str, *, on_wait: WaitReporter | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every repository of an organization (`type=all`; archived ones included)."""
        path = f"/orgs/{quote(org, safe='')}/repos"
        async for page in self.paginate(path, {"type": "all"}, on_wait=on_wait):
            for repo in page.data or ():
                yield repo

    def pulls(
        self,
        full_name: str,
        *,
        etags: Mapping[str, str] | None = None,
        on_wait: WaitReporter | None = None,
    ) -> AsyncIterator[GitHubResponse]:
        """Pages of a repository's pull requests, most recently updated first (list shape)."""
        params = {"state": "all", "sort": "updated", "direction": "desc"}
        return self.paginate(f"{_repo_path(full_name)}/pulls", params, etags=etags, on_wait=on_wait)

    async def pull(
        self, full_name: str, number: int, *, on_wait: WaitReporter | None = None
    ) -> dict[str, Any]:
        """One pull request's detail (additions, deletions, changed_files, merged, ...)."""
        response = await self.get(f"{_repo_path(full_name)}/pulls/{int(number)}", on_wait=on_wait)
        return dict(response.data)

    async def pull_reviews(
        self, full_name: str, number: int, *, on_wait: WaitReporter | None = None
    ) -> list[dict[str, Any]]:
        """Every review of a pull request, oldest first."""
        return await self._collect(f"{_repo_path(full_name)}/pulls/{int(number)}/reviews", on_wait)

    async def pull_commits(
        self, full_name: str, number: int, *, on_wait: WaitReporter | None = None
    ) -> list[dict[str, Any]]:
        """A pull request's commits, oldest first; GitHub returns at most 250."""
        return await self._collect(f"{_repo_path(full_name)}/pulls/{int(number)}/commits", on_wait)

    async def releases(
        self, full_name: str, *, on_wait: WaitReporter | None = None
    ) -> list[dict[str, Any]]:
        """Every release of a repository (drafts only with push access), newest first."""
        return await self._collect(f"{_repo_path(full_name)}/releases", on_wait)

    # -- internals ------------------------------------------------------------------------------

    async def _collect(self, path: str, on_wait: WaitReporter | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async for page in self.paginate(path, on_wait=on_wait):
            items.extend(page.data or ())
        return items

    async def _try_once(
        self, url: str, etag: str | None, spent: _Spent, on_wait: WaitReporter | None
    ) -> httpx.Response | None:
        """Send once: the response if it is usable, None after waiting to try again."""
        try:
            response = await self._send(url, etag, on_wait)
        except _RETRYABLE_ERRORS as exc:
            delay = backoff(self._retry_backoff, spent.retries)
            await self._retry(url, None, type(exc).__name__, spent, delay, on_wait)
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
        if decision.action is Action.OK:
            return response
        if decision.action is Action.WAIT_PRIMARY:
            spent.primary_waits += 1
            if spent.primary_waits > MAX_PRIMARY_WAITS:
                raise GitHubUnavailable(url, status, "rate limit", spent.retries + 1)
            await self._wait_primary(url, status, decision.delay, on_wait)
        elif decision.action is Action.WAIT_SECONDARY:
            # Every request of the owner pauses, not only this one (GitHub counts per owner).
            await self.budget.pause(self._clock() + decision.delay)
            await self._retry(url, status, SECONDARY, spent, decision.delay, on_wait)
        elif decision.action is Action.RETRY:
            delay = backoff(self._retry_backoff, spent.retries)
            await self._retry(url, status, f"HTTP {status}", spent, delay, on_wait)
        else:
            raise permanent_error(url, status, _github_message(response))
        return None

    async def _send(
        self, url: str, etag: str | None, on_wait: WaitReporter | None
    ) -> httpx.Response:
        headers = {"If-None-Match": etag} if etag else {}
        # Inside the semaphore: a request that queued for it checks the budget as it is now. The
        # answer is recorded before the fleet slot is given back: the next holder sees it.
        async with self._semaphore, self.budget.sending(url, on_wait):
            self.stats.requests += 1
            response = await self._http.get(url, headers=headers)
            await self._record(response)
        return response

    async def _record(self, response: httpx.Response) -> None:
        self.stats.by_status[response.status_code] += 1
        if response.status_code == 304:
            self.stats.not_modified += 1
        remaining = header_int(response.headers, "x-ratelimit-remaining")
        if remaining is not None:
            self.stats.rate_limit_remaining = remaining
        # A spent budget makes the next request wait for the reset before it is sent.
        await self.budget.observe(response.headers)

    async def _wait_primary(
        self, url: str, status: int | None, delay: float, on_wait: WaitReporter | None
    ) -> None:
        log.warning("github.rate_limited", url=url, status=status, limit="primary", delay=delay)
        if on_wait is not None:
            await on_wait(f"rate limited; waiting {delay:.0f}s for reset")
        await self._sleep(delay)

    async def _retry(
        self,
        url: str,
        status: int | None,
        reason: str,
        spent: _Spent,
        delay: float,
        on_wait: WaitReporter | None,
    ) -> None:
        """Wait before the next retry, or raise `GitHubUnavailable` when the retries are spent."""
        if spent.retries >= self._max_retries:
            raise GitHubUnavailable(url, status, reason, spent.retries + 1)
        spent.retries += 1
        event = "github.rate_limited" if reason == SECONDARY else "github.retry"
        log.warning(event, url=url, status=status, reason=reason, retry=spent.retries, delay=delay)
        if on_wait is not None:
            await on_wait(
                f"GitHub {reason}; retrying in {delay:.0f}s ({spent.retries}/{self._max_retries})"
            )
        await self._sleep(delay)


@dataclass
class _Spent:
    """What one `get` has spent so far."""

    retries: int = 0
    primary_waits: int = 0


def _headers(token: str | None) -> dict[str, str]:
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": USER_AGENT,
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _result(url: str, response: httpx.Response, etag: str | None) -> GitHubResponse:
    not_modified = response.status_code == 304
    next_link = response.links.get("next", {}).get("url")
    return GitHubResponse(
        status=response.status_code,
        data=None if not_modified or not response.content else response.json(),
        etag=response.headers.get("etag") or (etag if not_modified else None),
        next_url=next_link,
        url=url,
    )


def _github_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}".lower()


def _repo_path(full_name: str) -> str:
    owner, sep, name = full_name.strip().partition("/")
    # '.' and '..' would be resolved as path segments: `o/..` would become `GET /repos`.
    if not sep or not owner or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not an owner/repo name: {full_name[:100]!r}")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
