"""How the GitHub client reacts to an answer: a pure decision, so it is testable without I/O.

GitHub signals its limits in three ways (docs: "Rate limits for the REST API"):
- primary: `x-ratelimit-remaining: 0` with `x-ratelimit-reset` (epoch seconds); a request made
  before the reset fails with 403 or 429, so the client waits for the reset instead;
- secondary: 403/429 with `retry-after` (seconds), or a 403 whose message mentions a secondary
  rate limit without it, which asks for an exponentially growing wait;
- 5xx answers, dropped connections and timeouts, which are worth retrying with jitter.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: Extra seconds after `x-ratelimit-reset`, because GitHub's clock and ours differ slightly.
RESET_MARGIN = 1.0


class Action(enum.Enum):
    """What to do with an answer."""

    OK = "ok"
    WAIT_PRIMARY = "wait_primary"
    WAIT_SECONDARY = "wait_secondary"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    """The action for one answer and, for waits, how long to wait (seconds)."""

    action: Action
    delay: float = 0.0


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header, or None when it is missing or malformed."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value.strip()))
    except ValueError:
        return None


def primary_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait for the primary limit's reset, or None when budget remains."""
    if header_int(headers, "x-ratelimit-remaining") != 0:
        return None
    reset = header_int(headers, "x-ratelimit-reset")
    if reset is None:
        return 60.0
    return max(reset - now, 0.0) + RESET_MARGIN


def _is_secondary(status: int, headers: Mapping[str, str], body: str) -> bool:
    if "retry-after" in headers:
        return True
    return status == 429 or "secondary rate limit" in body.lower()


def decide(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    now: float,
    retries: int,
    secondary_backoff: float,
) -> Decision:
    """Classify an answer; `retries` counts retries already made (0 for the first request)."""
    if status < 400:
        return Decision(Action.OK)
    if status in (403, 429):
        wait = primary_wait(headers, now)
        if wait is not None:
            return Decision(Action.WAIT_PRIMARY, wait)
        if _is_secondary(status, headers, body):
            retry_after = header_int(headers, "retry-after")
            if retry_after is not None:
                return Decision(Action.WAIT_SECONDARY, float(retry_after))
            return Decision(Action.WAIT_SECONDARY, secondary_backoff * 2**retries)
    if status >= 500:
        return Decision(Action.RETRY)
    return Decision(Action.FAIL)


#: Jitter from a generator of its own, not the `random` module's shared state.
_JITTER = random.Random()


def backoff(base: float, retries: int, rand: Callable[[], float] | None = None) -> float:
    """Jittered exponential backoff: between half and all of `base * 2**retries`.

    Half is kept fixed so that retries never hammer GitHub immediately, the other half spreads
    clients that failed together.
    """
    ceiling: float = base * 2**retries
    return ceiling / 2 + (rand or _JITTER.random)() * ceiling / 2


#: GraphQL error types that say the primary budget is spent (GitHub has sent both spellings).
_GRAPHQL_RATE_LIMITED = frozenset({"RATE_LIMITED", "RATE_LIMIT"})
#: GraphQL error types that retrying the same query cannot fix (the query or the target is wrong).
_GRAPHQL_INVALID = frozenset(
    {"EXCESSIVE_PAGINATION", "MAX_NODE_LIMIT_EXCEEDED", "MISSING_PAGINATION_BOUNDARIES"}
)


class GraphQLProblem(enum.Enum):
    """What the `errors` of a GraphQL answer mean for the query that got them."""

    RATE_LIMITED = "rate_limited"
    SECONDARY = "secondary"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    INVALID = "invalid"
    #: Anything else, partial data included: GitHub's own failure, worth retrying.
    TRANSIENT = "transient"


def graphql_problem(body: Mapping[str, object]) -> GraphQLProblem | None:
    """Classify a GraphQL answer's `errors` (None: no errors, the data is complete).

    An answer without `data` whose errors carry no `type` is a query GitHub refused to run
    (syntax, unknown field, wrong argument): invalid, never retried.
    """
    errors = body.get("errors")
    if not errors or not isinstance(errors, list):
        return None
    types = {str(e.get("type") or "") for e in errors if isinstance(e, dict)}
    messages = " ".join(str(e.get("message") or "") for e in errors if isinstance(e, dict))
    if types & _GRAPHQL_RATE_LIMITED:
        return GraphQLProblem.RATE_LIMITED
    if "secondary rate limit" in messages.lower():
        return GraphQLProblem.SECONDARY
    if "NOT_FOUND" in types:
        return GraphQLProblem.NOT_FOUND
    if "FORBIDDEN" in types:
        return GraphQLProblem.FORBIDDEN
    if types & _GRAPHQL_INVALID or ("data" not in body and types <= {""}):
        return GraphQLProblem.INVALID
    return GraphQLProblem.TRANSIENT
