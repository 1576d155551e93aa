"""The rate-limit budget of one GitHub owner (the user behind a token, or an App installation).

GitHub counts its limits per owner, not per request stream: a secondary limit one request gets
applies to every request of the owner, and the primary budget (`x-ratelimit-remaining`, refilled at
`x-ratelimit-reset`) is spent by every client using it. So the REST and GraphQL clients of a token
share one `TokenBudget`, and every request first waits in `wait_ready` until neither a secondary
pause nor a spent primary budget stands in its way.

With a `SharedBudget` (the crawler database, which the crawlers of a fleet share), the budget is
also the fleet's: `wait_ready` reads the owner's row before every request (one primary-key read),
and what the answers say is written back with an UPSERT that keeps the most restrictive state —
at once when it matters (a secondary pause, a budget at or below `low_water`), else at most every
`sync_interval` seconds, so that a healthy crawl adds no database write per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

import structlog

from crawler_service.github.ratelimit import RESET_MARGIN, header_int

log = structlog.get_logger("ghpulse.github")

WaitReporter = Callable[[str], Awaitable[None]]
#: The owner of requests without a token: GitHub limits them per IP address, so their budget is
#: never shared through the database.
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class BudgetState:
    """What is known of an owner's limits (epoch seconds; None: nothing known)."""

    #: The REST (`core`) requests left until `reset_at`.
    remaining: int | None = None
    reset_at: float | None = None
    #: No request of the owner before this time: a secondary rate limit is in force.
    paused_until: float | None = None

    def delay(self, now: float) -> tuple[float, str]:
        """Seconds to wait before the next request, and why (a progress message; "" for none)."""
        pause = (self.paused_until or 0.0) - now
        spent = 0.0
        if self.remaining is not None and self.remaining <= 0 and self.reset_at is not None:
            spent = self.reset_at + RESET_MARGIN - now
        if pause <= 0 and spent <= 0:
            return 0.0, ""
        if pause >= spent:
            return pause, f"GitHub secondary rate limit; waiting {pause:.0f}s"
        return spent, f"rate limited; waiting {spent:.0f}s for reset"

    def merge(self, other: BudgetState | None) -> BudgetState:
        """The more restrictive of two states (what the shared UPSERT keeps, too)."""
        if other is None:
            return self
        paused = max((t for t in (self.paused_until, other.paused_until) if t), default=None)
        mine, theirs = (self.reset_at or 0.0), (other.reset_at or 0.0)
        if mine == theirs:
            counts = [r for r in (self.remaining, other.remaining) if r is not None]
            remaining = min(counts) if counts else None
            return BudgetState(remaining, self.reset_at or other.reset_at, paused)
        newer = self if mine > theirs else other
        return BudgetState(newer.remaining, newer.reset_at, paused)


class SharedBudget(Protocol):
    """Where the crawlers of a fleet keep each owner's `BudgetState` (the crawler database)."""

    async def load_budget(self, owner: str) -> BudgetState | None:
        """The owner's stored state, None when no crawler wrote one yet."""

    async def save_budget(self, owner: str, state: BudgetState) -> None:
        """Merge `state` into the owner's row (see `BudgetState.merge`), creating it if needed."""

    async def reserve_request(self, owner: str, now: float) -> bool:
        """Take one request off the owner's stored `remaining` (atomically, for the whole fleet);
        False when it is 0 before the stored reset, so the request must wait for the reset."""


class TokenBudget:
    """The budget of one owner; `owner` is set once known (see `GitHubClient.identify`)."""

    def __init__(
        self,
        owner: str = "",
        *,
        shared: SharedBudget | None = None,
        sync_interval: float = 1.0,
        low_water: int = 50,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.owner = owner
        self.shared = shared
        self.sync_interval = sync_interval
        self.low_water = low_water
        self._sleep = sleep
        self._clock = clock
        self.state = BudgetState()
        self._synced_at = float("-inf")
        #: How many times a request waited for the budget.
        self.waits = 0

    @property
    def is_shared(self) -> bool:
        return self.shared is not None and self.owner not in ("", ANONYMOUS)

    async def wait_ready(self, url: str, on_wait: WaitReporter | None = None) -> None:
        """Return once no pause or spent budget of the owner (in this process or, when shared,
        anywhere in the fleet) forbids a request now."""
        while True:
            await self._load()
            delay, reason = self.state.delay(self._clock())
            if delay <= 0 and await self._reserved():
                return
            delay, reason = self.state.delay(self._clock())
            if delay <= 0:
                continue
            self.waits += 1
            log.warning("github.budget_wait", url=url, owner=self.owner, reason=reason, delay=delay)
            if on_wait is not None:
                await on_wait(reason)
            await self._sleep(delay)

    async def pause(self, until: float) -> None:
        """A secondary limit: no request of the owner before `until` (shared at once)."""
        if (self.state.paused_until or 0.0) >= until:
            return
        self.state = replace(self.state, paused_until=until)
        await self._save(force=True)

    async def observe(self, headers: Mapping[str, str]) -> None:
        """Record the primary budget an answer reports (`x-ratelimit-*`, REST only)."""
        remaining = header_int(headers, "x-ratelimit-remaining")
        if remaining is None or headers.get("x-ratelimit-resource", "core") != "core":
            return
        reset = header_int(headers, "x-ratelimit-reset")
        if reset is None and remaining <= 0:
            reset = int(self._clock()) + 60
        seen = BudgetState(remaining, None if reset is None else float(reset))
        self.state = seen.merge(self.state)
        await self._save(force=remaining <= self.low_water)

    async def _reserved(self) -> bool:
        """Near the end of the budget (at most `low_water` left), each request of the fleet takes
        its unit from the shared row first: no two crawlers spend the last request."""
        remaining, now = self.state.remaining, self._clock()
        if not self.is_shared or remaining is None or remaining > self.low_water:
            return True
        if self.state.reset_at is None or self.state.reset_at + RESET_MARGIN <= now:
            return True
        assert self.shared is not None
        if await self.shared.reserve_request(self.owner, now):
            return True
        self.state = replace(self.state, remaining=0)
        return False

    async def _load(self) -> None:
        if not self.is_shared:
            return
        assert self.shared is not None
        self.state = self.state.merge(await self.shared.load_budget(self.owner))

    async def _save(self, *, force: bool) -> None:
        if not self.is_shared:
            return
        now = self._clock()
        if not force and now - self._synced_at < self.sync_interval:
            return
        self._synced_at = now
        assert self.shared is not None
        await self.shared.save_budget(self.owner, self.state)
