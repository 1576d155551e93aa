"""Faults the fake GitHub injects on request, and its primary rate-limit budget.

A fault matches request paths by regular expression (searched in the path without the `/api/v3`
prefix and without the query) and applies to the next `count` matching requests. Faults are
consulted in the order they were scheduled. Thread-safe: the server's threads take faults while a
test schedules more.
"""

from __future__ import annotations

import enum
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
PRIMARY_MESSAGE = "API rate limit exceeded for user ID 1."
DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"


class FaultKind(enum.Enum):
    """What a fault does to a matching request."""

    #: Answer with `status` (and `retry-after` when set) instead of the resource.
    STATUS = "status"
    #: Close the connection without answering.
    DROP = "drop"
    #: Answer normally after `delay` seconds.
    SLOW = "slow"
    #: Spend the primary rate-limit budget (reset in `reset_in` seconds), then answer as GitHub.
    #: On `/graphql` it is the GraphQL budget, and GitHub answers with a RATE_LIMITED error.
    PRIMARY = "primary"
    #: GraphQL only: answer 200 with `errors` of `error_type` ("" for none) and no data, or, with
    #: `partial`, with the query's data minus `repository` (what GitHub does when part failed).
    GRAPHQL_ERRORS = "graphql_errors"


@dataclass
class Fault:
    """One scheduled fault; `count` is how many more matching requests it applies to."""

    kind: FaultKind
    pattern: str = ".*"
    count: int = 1
    status: int = 502
    retry_after: int | None = None
    message: str | None = None
    delay: float = 0.0
    reset_in: int = 60
    error_type: str = ""
    partial: bool = False

    def body(self) -> dict[str, str]:
        """The JSON error body of a STATUS fault."""
        secondary = self.status == 429 or (self.status == 403 and self.retry_after is not None)
        message = self.message or (SECONDARY_MESSAGE if secondary else _reason(self.status))
        return {"message": message, "documentation_url": DOCS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """A fault from the control endpoint's JSON (`kind`, `path`, and the fields above)."""
        return cls(
            kind=FaultKind(data.get("kind", "status")),
            pattern=str(data.get("path", ".*")),
            count=int(data.get("count", 1)),
            status=int(data.get("status", 502)),
            retry_after=None if data.get("retry_after") is None else int(data["retry_after"]),
            message=data.get("message"),
            delay=float(data.get("delay", 0.0)),
            reset_in=int(data.get("reset_in", 60)),
            error_type=str(data.get("error_type", "")),
            partial=bool(data.get("partial", False)),
        )

    def graphql_body(self) -> dict[str, Any]:
        """The answer of a GRAPHQL_ERRORS fault without `partial`."""
        error: dict[str, Any] = {"message": self.message or "Something went wrong"}
        if self.error_type:
            error["type"] = self.error_type
        return {"data": None, "errors": [error]}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Faults:
    """The schedule of faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Schedule a fault."""
        re.compile(fault.pattern)
        with self._lock:
            self._pending.append(fault)
        return fault

    def fail_next(
        self,
        path_pattern: str = ".*",
        status: int = 502,
        count: int = 1,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """Answer the next `count` matching requests with `status` (e.g. a 502 burst, a 429)."""
        return self.add(Fault(FaultKind.STATUS, path_pattern, count, status, retry_after, message))

    def secondary_limit(
        self, path_pattern: str = ".*", count: int = 1, retry_after: int | None = None
    ) -> Fault:
        """A secondary rate limit: 403 whose message says so, with or without `retry-after`."""
        return self.fail_next(path_pattern, 403, count, retry_after, SECONDARY_MESSAGE)

    def drop_next(self, path_pattern: str = ".*", count: int = 1) -> Fault:
        """Close the connection of the next `count` matching requests without an answer."""
        return self.add(Fault(FaultKind.DROP, path_pattern, count))

    def slow_next(self, path_pattern: str = ".*", delay: float = 0.05, count: int = 1) -> Fault:
        """Delay the next `count` matching answers by `delay` seconds."""
        return self.add(Fault(FaultKind.SLOW, path_pattern, count, delay=delay))

    def exhaust_primary(self, path_pattern: str = ".*", reset_in: int = 60) -> Fault:
        """Spend the whole primary budget at the next matching request (reset in `reset_in` s)."""
        return self.add(Fault(FaultKind.PRIMARY, path_pattern, 1, reset_in=reset_in))

    def graphql_errors(
        self,
        error_type: str = "",
        *,
        partial: bool = False,
        message: str | None = None,
        count: int = 1,
    ) -> Fault:
        """Answer the next `count` GraphQL queries with errors (see `FaultKind.GRAPHQL_ERRORS`)."""
        return self.add(
            Fault(
                FaultKind.GRAPHQL_ERRORS,
                "^/graphql$",
                count,
                message=message,
                error_type=error_type,
                partial=partial,
            )
        )

    def take(self, path: str) -> Fault | None:
        """The first pending fault matching `path`, consuming one of its count."""
        with self._lock:
            for fault in self._pending:
                if re.search(fault.pattern, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._pending.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._pending.clear()

    @property
    def pending(self) -> list[Fault]:
        """The faults not yet used up."""
        with self._lock:
            return list(self._pending)


class RateBudget:
    """GitHub's primary rate limit: `limit` requests (GraphQL: points) per `window` seconds,
    refilled at reset; `resource` is `core` for REST, `graphql` for GraphQL."""

    def __init__(
        self,
        limit: int = 5000,
        window: int = 3600,
        clock: Callable[[], float] = time.time,
        resource: str = "core",
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.resource = resource
        self.limit = limit
        self.window = window
        self.remaining = limit
        self.reset = int(clock()) + window

    def charge(self, amount: int = 1) -> bool:
        """Spend `amount`; False (and nothing spent) when the budget cannot pay it."""
        with self._lock:
            self._refill()
            if self.remaining < amount or self.remaining <= 0:
                return False
            self.remaining -= amount
            return True

    def set(self, remaining: int, reset_in: int | None = None) -> None:
        """Force the budget (e.g. `set(0, 42)`: exhausted, resets in 42 s)."""
        with self._lock:
            self.remaining = remaining
            if reset_in is not None:
                self.reset = int(self._clock()) + reset_in

    def headers(self) -> dict[str, str]:
        """The `x-ratelimit-*` headers describing the budget now."""
        with self._lock:
            self._refill()
            return {
                "x-ratelimit-limit": str(self.limit),
                "x-ratelimit-remaining": str(self.remaining),
                "x-ratelimit-reset": str(self.reset),
                "x-ratelimit-used": str(self.limit - self.remaining),
                "x-ratelimit-resource": self.resource,
            }

    def state(self) -> dict[str, Any]:
        """The budget as GraphQL's `RateLimit` object shows it (`cost` and `nodeCount` aside)."""
        with self._lock:
            self._refill()
            reset = datetime.fromtimestamp(self.reset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {
                "limit": self.limit,
                "remaining": self.remaining,
                "used": self.limit - self.remaining,
                "resetAt": reset,
            }

    def _refill(self) -> None:
        now = self._clock()
        if now >= self.reset:
            self.remaining = self.limit
            self.reset = int(now) + self.window
