"""How the client classifies GitHub's answers, and its backoff."""

from __future__ import annotations

import pytest

from crawler_service.github.errors import (
    GitHubForbidden,
    GitHubGone,
    GitHubInvalid,
    GitHubNotFound,
    GitHubPermanentError,
    GitHubUnauthorized,
    permanent_error,
)
from crawler_service.github.ratelimit import Action, Decision, backoff, decide, primary_wait

NOW = 1_000.0
SECONDARY = "You have exceeded a secondary rate limit."


@pytest.mark.parametrize(
    ("status", "headers", "body", "attempt", "expected"),
    [
        (200, {}, "", 0, Decision(Action.OK)),
        (304, {}, "", 0, Decision(Action.OK)),
        (
            200,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1042"},
            "",
            0,
            Decision(Action.OK),
        ),
        (
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1042"},
            "",
            0,
            Decision(Action.WAIT_PRIMARY, 43.0),
        ),
        (
            429,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "900"},
            "",
            0,
            Decision(Action.WAIT_PRIMARY, 1.0),
        ),
        (403, {"retry-after": "30"}, SECONDARY, 2, Decision(Action.WAIT_SECONDARY, 30.0)),
        (429, {"retry-after": "5"}, "", 0, Decision(Action.WAIT_SECONDARY, 5.0)),
        (403, {"x-ratelimit-remaining": "12"}, SECONDARY, 0, Decision(Action.WAIT_SECONDARY, 60.0)),
        (403, {}, SECONDARY.upper(), 2, Decision(Action.WAIT_SECONDARY, 240.0)),
        (429, {}, "", 1, Decision(Action.WAIT_SECONDARY, 120.0)),
        (403, {"x-ratelimit-remaining": "12"}, "Resource not accessible", 0, Decision(Action.FAIL)),
        (404, {}, "", 0, Decision(Action.FAIL)),
        (422, {}, "", 0, Decision(Action.FAIL)),
        (500, {}, "", 0, Decision(Action.RETRY)),
        (502, {}, "", 3, Decision(Action.RETRY)),
        (503, {"retry-after": "x"}, "", 0, Decision(Action.RETRY)),
    ],
)
def test_decide(status, headers, body, attempt, expected):
    decision = decide(status, headers, body, now=NOW, retries=attempt, secondary_backoff=60.0)
    assert decision == expected


def test_primary_wait_without_reset_header_waits_a_minute():
    assert primary_wait({"x-ratelimit-remaining": "0"}, NOW) == 60.0
    assert primary_wait({"x-ratelimit-remaining": "1"}, NOW) is None
    assert primary_wait({}, NOW) is None


@pytest.mark.parametrize("attempt", [0, 1, 4])
def test_backoff_is_jittered_between_half_and_all_of_the_exponential_delay(attempt):
    ceiling = 2.0 * 2**attempt
    assert backoff(2.0, attempt, rand=lambda: 0.0) == ceiling / 2
    assert backoff(2.0, attempt, rand=lambda: 1.0) == ceiling
    assert ceiling / 2 <= backoff(2.0, attempt) <= ceiling


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (401, GitHubUnauthorized, "GITHUB_UNAUTHORIZED"),
        (403, GitHubForbidden, "GITHUB_FORBIDDEN"),
        (404, GitHubNotFound, "GITHUB_NOT_FOUND"),
        (410, GitHubGone, "GITHUB_GONE"),
        (422, GitHubInvalid, "GITHUB_INVALID"),
        (400, GitHubPermanentError, "GITHUB_ERROR"),
    ],
)
def test_permanent_errors_by_status(status, kind, code):
    error = permanent_error("https://api.github.com/repos/o/r", status, "Nope")
    assert type(error) is kind
    assert (error.status, error.code, error.retryable) == (status, code, False)
    assert error.metadata == {"status": status, "url": "https://api.github.com/repos/o/r"}
    assert str(error) == f"GitHub answered {status} for https://api.github.com/repos/o/r: Nope"
