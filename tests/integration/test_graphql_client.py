"""The GraphQL client against the fake GitHub on a real port, its clock and sleep injected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crawler_service.github import queries
from crawler_service.github.errors import (
    GitHubInvalid,
    GitHubNotFound,
    GitHubUnauthorized,
    GitHubUnavailable,
)
from crawler_service.github.graphql import GraphQLClient, graphql_url
from ghpulse.testing.fake_github import FakeGitHub
from ghpulse.testing.fake_github.faults import SECONDARY_MESSAGE
from tests.support.github import TOKEN, FakeClock, serve

API = "ghpulse-demo/api"
QUERY = queries.PULL_REQUESTS
VARIABLES = queries.pull_requests_variables(API, 5, None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeGitHub]:
    with serve(clock=clock) as fake:
        yield fake


def client(fake: FakeGitHub, clock: FakeClock, **options: Any) -> GraphQLClient:
    defaults: dict[str, Any] = {
        "sleep": clock.sleep,
        "clock": clock,
        "max_retries": 3,
        "retry_backoff": 1.0,
        "secondary_backoff": 60.0,
    }
    return GraphQLClient(fake.url, TOKEN, **{**defaults, **options})


def statuses(fake: FakeGitHub) -> list[int]:
    return [record.status for record in fake.requests]


def numbers(answer: Any) -> list[int]:
    return [n["number"] for n in answer.data["repository"]["pullRequests"]["nodes"]]


def test_endpoints():
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://api.github.com/") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.example.com/api/v3") == "https://ghe.example.com/api/graphql"
    assert graphql_url("http://127.0.0.1:1/api/v3/") == "http://127.0.0.1:1/api/graphql"


async def test_a_query_returns_its_data_and_cost(fake, clock):
    async with client(fake, clock) as graphql:
        answer = await graphql.query(QUERY, VARIABLES)

    assert len(numbers(answer)) == 5
    assert (answer.cost, answer.remaining) == (1, 4999)
    assert (graphql.stats.queries, graphql.stats.points) == (1, 1)
    assert graphql.stats.rate_limit_remaining == 4999
    assert fake.requests[0][:2] == ("POST", "/graphql")


async def test_enterprise_endpoint(fake, clock):
    async with GraphQLClient(fake.enterprise_url, TOKEN, clock=clock) as graphql:
        answer = await graphql.query(QUERY, VARIABLES)

    assert graphql.url == fake.url + "/api/graphql"
    assert len(numbers(answer)) == 5


async def test_rate_limited_waits_for_the_reset(fake, clock):
    fake.graphql_budget.set(0, reset_in=42)
    messages: list[str] = []

    async def on_wait(message: str) -> None:
        messages.append(message)

    async with client(fake, clock) as graphql:
        answer = await graphql.query(QUERY, VARIABLES, on_wait=on_wait)

    assert len(numbers(answer)) == 5
    assert clock.sleeps == [43.0]
    assert messages == ["GraphQL rate limited; waiting 43s for reset"]
    assert statuses(fake) == [200, 200]
    assert fake.graphql_points == [1]


async def test_a_spent_budget_waits_before_the_next_query(fake, clock):
    fake.graphql_budget.set(1, reset_in=42)
    async with client(fake, clock) as graphql:
        first = await graphql.query(QUERY, VARIABLES)
        assert first.remaining == 0
        await graphql.query(QUERY, VARIABLES)

    assert statuses(fake) == [200, 200]
    assert clock.sleeps == [43.0]


async def test_rest_budget_does_not_limit_graphql(fake, clock):
    fake.budget.set(0, reset_in=42)
    async with client(fake, clock) as graphql:
        await graphql.query(QUERY, VARIABLES)

    assert clock.sleeps == []


@pytest.mark.parametrize("status", [403, 429])
async def test_secondary_limit_waits_retry_after(fake, clock, status):
    fake.faults.fail_next("^/graphql$", status, retry_after=7)
    async with client(fake, clock) as graphql:
        await graphql.query(QUERY, VARIABLES)

    assert clock.sleeps == [7.0]
    assert statuses(fake) == [status, 200]


async def test_secondary_limit_in_errors_backs_off_exponentially(fake, clock):
    fake.faults.graphql_errors(message=SECONDARY_MESSAGE, count=2)
    async with client(fake, clock) as graphql:
        await graphql.query(QUERY, VARIABLES)

    assert clock.sleeps == [60.0, 120.0]
    assert statuses(fake) == [200, 200, 200]


async def test_a_502_burst_is_retried_with_jittered_backoff(fake, clock):
    fake.faults.fail_next("^/graphql$", 502, count=3)
    async with client(fake, clock) as graphql:
        await graphql.query(QUERY, VARIABLES)

    assert statuses(fake) == [502, 502, 502, 200]
    for attempt, delay in enumerate(clock.sleeps):
        assert 2**attempt / 2 <= delay <= 2**attempt


@pytest.mark.parametrize("error_type", ["", "SERVICE_UNAVAILABLE"])
async def test_partial_data_with_errors_is_retried_never_returned(fake, clock, error_type):
    fake.faults.graphql_errors(error_type, partial=True)
    fake.faults.graphql_errors(error_type)
    async with client(fake, clock) as graphql:
        answer = await graphql.query(QUERY, VARIABLES)

    assert len(numbers(answer)) == 5
    assert statuses(fake) == [200, 200, 200]
    assert len(clock.sleeps) == 2
    # Only complete answers count: the partial one was charged by GitHub but is not returned.
    assert graphql.stats.points == 1
    assert fake.graphql_points == [1, 1]


async def test_a_dropped_connection_is_retried(fake, clock):
    fake.faults.drop_next("^/graphql$")
    async with client(fake, clock) as graphql:
        await graphql.query(QUERY, VARIABLES)

    assert statuses(fake) == [0, 200]
    assert len(clock.sleeps) == 1


class _TimesOutOnce(httpx.AsyncBaseTransport):
    """Real HTTP, except that the first request times out (as a stuck answer would)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.timed_out = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.timed_out:
            self.timed_out = True
            raise httpx.ReadTimeout("timed out", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_timeout_is_retried(fake, clock):
    async with client(fake, clock, transport=_TimesOutOnce()) as graphql:
        await graphql.query(QUERY, VARIABLES)

    assert statuses(fake) == [200]
    assert len(clock.sleeps) == 1


async def test_not_found_raises_without_retrying(fake, clock):
    async with client(fake, clock) as graphql:
        with pytest.raises(GitHubNotFound) as caught:
            await graphql.query(QUERY, queries.pull_requests_variables("nobody/nothing", 5, None))

    assert "Could not resolve to a Repository" in caught.value.message
    assert statuses(fake) == [200]


async def test_a_query_github_would_reject_is_invalid(fake, clock):
    async with client(fake, clock) as graphql:
        with pytest.raises(GitHubInvalid) as caught:
            await graphql.query('{ repository(owner: "a", name: "b") { stars } }', {})

    assert "Cannot query field 'stars'" in caught.value.message
    assert statuses(fake) == [200]


async def test_a_wrong_token_raises_unauthorized(clock):
    with serve(token="the-right-one") as fake:
        async with client(fake, clock) as graphql:
            with pytest.raises(GitHubUnauthorized):
                await graphql.query(QUERY, VARIABLES)


async def test_exhausted_retries_raise_unavailable(fake, clock):
    fake.faults.fail_next("^/graphql$", 503, count=10)
    async with client(fake, clock, max_retries=2) as graphql:
        with pytest.raises(GitHubUnavailable) as caught:
            await graphql.query(QUERY, VARIABLES)

    assert (caught.value.status, caught.value.attempts, caught.value.retryable) == (503, 3, True)
    assert statuses(fake) == [503, 503, 503]


async def test_endless_rate_limits_give_up_after_three_waits(fake, clock):
    async def keep_exhausted(seconds: float) -> None:
        await clock.sleep(seconds)
        fake.graphql_budget.set(0, reset_in=42)

    fake.graphql_budget.set(0, reset_in=42)
    async with client(fake, clock, sleep=keep_exhausted) as graphql:
        with pytest.raises(GitHubUnavailable):
            await graphql.query(QUERY, VARIABLES)

    assert statuses(fake) == [200, 200, 200, 200]
