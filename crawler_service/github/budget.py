"""The rate-limit budget of one GitHub owner (the user behind a token, or an App installation).

GitHub counts its limits per owner, not per request stream: a secondary limit one request gets
applies to every request of the owner, and the primary budget (`x-ratelimit-remaining`, refilled at
`x-ratelimit-reset`) is spent by every client using it. So the REST and GraphQL clients of a token
share one `TokenBudget`, and every request is sent inside `sending`, once neither a secondary
pause nor a spent primary budget stands in its way.

With a `SharedBudget` (the crawler database, which the crawlers of a fleet share), the budget is
also the fleet's: `sending` reads the owner's row before every request (one primary-key read),
and what the answers say is written back with an UPSERT that keeps the most restrictive state —
at once when it matters (a secondary pause, a budget at or below `low_water`), else at most every
`sync_interval` seconds, so that a healthy crawl adds no database write per request.

With `fleet_concurrency` (GHPULSE_GITHUB_FLEET_CONCURRENCY) the fleet also bounds the owner's
requests in flight: each request holds one of the owner's `github_slots` rows while it is sent
(two more short writes per request), and waits while all are held.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Protocol

import structlog

from crawler_service.github.ratelimit import RESET_MARGIN, header_int

#: Jitter from a generator of its own, not the `random` module's shared state.
_JITTER = random.Random()
log = structlog.get_logger("ghpulse.github")

WaitReporter = Callable[[str], Awaitable[None]]
#: The owner of requests without a token: GitHub limits them per IP address, so their budget is
#: never shared through the database.
ANONYMOUS = "anonymous"
#: The first and the longest pause between attempts to take a fleet slot (seconds).
SLOT_POLL, SLOT_POLL_MAX = 0.02, 0.5


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

    async def acquire_slot(
        self, owner: str, limit: int, holder: str, now: float, ttl: float
    ) -> int | None:
        """Take one of the owner's `limit` in-flight slots for `holder` until `now + ttl` (a
        crashed holder's slot frees itself then): its number, or None when all are held."""

    async def release_slot(self, owner: str, slot: int, holder: str) -> None:
        """Free `slot` if `holder` still holds it."""


class TokenBudget:
    """The budget of one owner; `owner` is set once known (see `GitHubClient.identify`)."""

    def __init__(
        self,
        owner: str = "",
        *,
        shared: SharedBudget | None = None,
        sync_interval: float = 1.0,
        low_water: int = 50,
        fleet_concurrency: int = 0,
        slot_ttl: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.owner = owner
        self.shared = shared
        self.sync_interval = sync_interval
        self.low_water = low_water
        #: The most requests of the owner in flight across the fleet (0: no fleet-wide bound).
        self.fleet_concurrency = fleet_concurrency
        #: How long a slot stays taken by a holder that never frees it (a crashed crawler).
        self.slot_ttl = slot_ttl
        self._holder = uuid.uuid4().hex
        self._sleep = sleep
        self._clock = clock
        self.state = BudgetState()
        self._synced_at = float("-inf")
        #: How many times a request waited for the budget.
        self.waits = 0

    @property
    def is_shared(self) -> bool:
        return self.shared is not None and self.owner not in ("", ANONYMOUS)

    @asynccontextmanager
    async def sending(self, url: str, on_wait: WaitReporter | None = None) -> AsyncIterator[None]:
        """Enter once no pause or spent budget of the owner (in this process or, when shared,
        anywhere in the fleet) forbids a request now and, with a fleet-wide bound, once one of
        the owner's slots is taken; send the request inside."""
        slot = await self._ready(url, on_wait)
        try:
            yield
        finally:
            if slot is not None:
                assert self.shared is not None
                await self.shared.release_slot(self.owner, slot, self._holder)

    async def _ready(self, url: str, on_wait: WaitReporter | None) -> int | None:
        """The slot taken (None: no fleet-wide bound) once nothing forbids sending now. The
        budget is read after the slot is taken, so the check is as fresh as can be; a wait for
        the budget gives the slot back first."""
        while True:
            slot = await self._take_slot(url, on_wait)
            delay, reason = await self._delay()
            if delay <= 0:
                return slot
            if slot is not None:
                assert self.shared is not None
                await self.shared.release_slot(self.owner, slot, self._holder)
            self.waits += 1
            log.warning("github.budget_wait", url=url, owner=self.owner, reason=reason, delay=delay)
            if on_wait is not None:
                await on_wait(reason)
            await self._sleep(delay)

    async def _delay(self) -> tuple[float, str]:
        await self._load()
        delay, reason = self.state.delay(self._clock())
        if delay > 0 or await self._reserved():
            return delay, reason
        # The fleet spent the last request first: `_reserved` marked the budget spent.
        delay, reason = self.state.delay(self._clock())
        return max(delay, SLOT_POLL), reason or "rate limited; waiting for reset"

    async def _take_slot(self, url: str, on_wait: WaitReporter | None) -> int | None:
        if not self.fleet_concurrency or not self.is_shared:
            return None
        assert self.shared is not None
        poll = SLOT_POLL
        while True:
            now = self._clock()
            slot = await self.shared.acquire_slot(
                self.owner, self.fleet_concurrency, self._holder, now, self.slot_ttl
            )
            if slot is not None:
                return slot
            if poll == SLOT_POLL:
                log.debug("github.fleet_slots_busy", url=url, owner=self.owner)
                if on_wait is not None:
                    await on_wait(f"{self.fleet_concurrency} requests in flight across the fleet")
            # Jittered, so that waiting crawlers do not ask all at once.
            await self._sleep(poll * (0.5 + _JITTER.random()))
            poll = min(poll * 2, SLOT_POLL_MAX)

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
