"""The GitHub client against the fake GitHub on a real port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

from crawler_service.github.client import (
    GitHubClient,
    GitHubNotFound,
    GitHubUnauthorized,
    GitHubUnavailable,
)
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.github import TOKEN, FakeClock, serve

API = "ghpulse-demo/api"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeGitHub]:
    with serve(clock=clock) as fake:
        yield fake


def client(fake: FakeGitHub, clock: FakeClock, **options: Any) -> GitHubClient:
    defaults: dict[str, Any] = {
        "sleep": clock.sleep,
        "clock": clock,
        "max_retries": 3,
        "retry_backoff": 1.0,
        "secondary_backoff": 60.0,
    }
    return GitHubClient(fake.url, TOKEN, **{**defaults, **options})


def statuses(fake: FakeGitHub) -> list[int]:
    return [record.status for record in fake.requests]


async def test_pulls_follow_link_pagination_with_per_page_100(fake, clock):
    async with client(fake, clock) as github:
        pages = [page async for page in github.pulls(API)]

    items = [pr for page in pages for pr in page.data]
    assert [len(page.data) for page in pages] == [100, 24]
    assert len({pr["number"] for pr in items}) == len(fake.dataset.repo(API).pulls)
    updated = [pr["updated_at"] for pr in items]
    assert updated == sorted(updated, reverse=True)
    assert "additions" not in items[0]
    first, second = fake.requests
    assert first.query == {
        "direction": "desc",
        "per_page": "100",
        "sort": "updated",
        "state": "all",
    }
    assert second.query == {**first.query, "page": "2"}
    assert pages[0].next_url == pages[1].url
    assert pages[1].next_url is None


async def test_unchanged_pages_answer_304_for_stored_etags(fake, clock):
    async with client(fake, clock) as github:
        etags = {p.url: p.etag async for p in github.pulls(API) if p.etag}
        remaining = fake.budget.remaining
        again = [page async for page in github.pulls(API, etags=etags)]

        assert [page.status for page in again] == [304, 304]
        assert [page.data for page in again] == [None, None]
        assert [page.etag for page in again] == list(etags.values())
        assert github.stats.not_modified == 2
        assert github.stats.requests == 4
    assert fake.budget.remaining == remaining  # a 304 is free


async def test_an_edited_pull_changes_the_first_page(fake, clock):
    async with client(fake, clock) as github:
        etags = {p.url: p.etag async for p in github.pulls(API) if p.etag}
        fake.dataset.touch_pull(API, 40, title="Edited")
        first = await anext(aiter(github.pulls(API, etags=etags)))

    assert first.status == 200
    assert (first.data[0]["number"], first.data[0]["title"]) == (40, "Edited")


async def test_enterprise_base_url(clock):
    with serve(clock=clock) as fake:
        async with GitHubClient(fake.enterprise_url + "/", TOKEN, sleep=clock.sleep) as gh:
            repo = await gh.repository(API)
            pages = [page async for page in gh.pulls(API)]

    assert repo["full_name"] == API
    assert pages[0].url.startswith(fake.enterprise_url + "/repos/ghpulse-demo/api/pulls?")
    assert pages[0].next_url is not None
    assert pages[0].next_url.startswith(fake.enterprise_url + "/repos/")
    assert fake.requests[0].path == "/repos/ghpulse-demo/api"


async def test_primary_rate_limit_waits_for_the_reset(fake, clock):
    fake.budget.set(0, reset_in=42)
    messages: list[str] = []

    async def on_wait(message: str) -> None:
        messages.append(message)

    async with client(fake, clock) as github:
        pr = await github.pull(API, 1, on_wait=on_wait)

    assert pr["number"] == 1
    assert clock.sleeps == [43.0]
    assert messages == ["rate limited; waiting 43s for reset"]
    assert statuses(fake) == [403, 200]


async def test_a_spent_budget_waits_before_the_next_request(fake, clock):
    fake.budget.set(1, reset_in=42)
    async with client(fake, clock) as github:
        await github.pull(API, 1)
        assert github.stats.rate_limit_remaining == 0
        await github.pull(API, 2)

    assert statuses(fake) == [200, 200]
    assert clock.sleeps == [43.0]


@pytest.mark.parametrize("status", [403, 429])
async def test_secondary_limit_waits_retry_after(fake, clock, status):
    fake.faults.fail_next(r"/pulls/1$", status, retry_after=7)
    async with client(fake, clock) as github:
        pr = await github.pull(API, 1)

    assert pr["number"] == 1
    assert clock.sleeps == [7.0]
    assert statuses(fake) == [status, 200]


@pytest.mark.parametrize("status", [403, 429])
async def test_secondary_limit_without_retry_after_backs_off_exponentially(fake, clock, status):
    if status == 403:
        fake.faults.secondary_limit(r"/pulls/1$", count=2)
    else:
        fake.faults.fail_next(r"/pulls/1$", 429, count=2)
    async with client(fake, clock, secondary_backoff=60.0) as github:
        await github.pull(API, 1)

    assert clock.sleeps == [60.0, 120.0]


async def test_a_502_burst_is_retried_with_jittered_backoff(fake, clock):
    fake.faults.fail_next(r"/reviews$", 502, count=3)
    async with client(fake, clock, retry_backoff=1.0) as github:
        reviews = await github.pull_reviews(API, 1)

    assert len(reviews) == 1
    assert statuses(fake) == [502, 502, 502, 200]
    for attempt, delay in enumerate(clock.sleeps):
        assert 2**attempt / 2 <= delay <= 2**attempt


async def test_a_dropped_connection_is_retried(fake, clock):
    fake.faults.drop_next(r"/commits$")
    async with client(fake, clock) as github:
        commits = await github.pull_commits(API, 1)

    assert len(commits) == 1
    assert statuses(fake) == [0, 200]
    assert len(clock.sleeps) == 1


async def test_404_raises_not_found_without_retrying(fake, clock):
    async with client(fake, clock) as github:
        with pytest.raises(GitHubNotFound) as caught:
            await github.pull(API, 9999)

    error = caught.value
    assert (error.status, error.code, error.retryable) == (404, "GITHUB_NOT_FOUND", False)
    assert error.url == f"{fake.url}/repos/{API}/pulls/9999"
    assert statuses(fake) == [404]


async def test_a_wrong_token_raises_unauthorized(clock):
    with serve(token="the-right-one") as fake:
        async with client(fake, clock) as github:
            with pytest.raises(GitHubUnauthorized) as caught:
                await github.repository(API)
        async with GitHubClient(fake.url, "the-right-one") as github:
            assert (await github.repository(API))["name"] == "api"

    assert caught.value.code == "GITHUB_UNAUTHORIZED"


async def test_exhausted_retries_raise_unavailable(fake, clock):
    fake.faults.fail_next(r"/pulls/1$", 503, count=10)
    async with client(fake, clock, max_retries=2) as github:
        with pytest.raises(GitHubUnavailable) as caught:
            await github.pull(API, 1)

    error = caught.value
    assert (error.status, error.code, error.retryable, error.attempts) == (
        503,
        "GITHUB_UNAVAILABLE",
        True,
        3,
    )
    assert statuses(fake) == [503, 503, 503]


async def test_the_token_never_leaks(fake, clock):
    fake.faults.fail_next(r"/pulls/1$", 502, count=10)
    fake.faults.secondary_limit(r"/pulls/2$", retry_after=1)
    fake.budget.set(1, reset_in=5)
    messages: list[str] = []
    errors: list[Exception] = []

    async def on_wait(message: str) -> None:
        messages.append(message)

    with structlog.testing.capture_logs() as logs:
        async with client(fake, clock, max_retries=1) as github:
            for number in (1, 2, 9999):
                try:
                    response = await github.get(f"/repos/{API}/pulls/{number}", on_wait=on_wait)
                    assert TOKEN not in response.url
                except Exception as error:
                    errors.append(error)

    assert [type(e) for e in errors] == [GitHubUnavailable, GitHubNotFound]
    assert {entry["event"] for entry in logs} >= {"github.retry", "github.rate_limited"}
    texts = [repr(logs), *messages, *(repr(e) + str(e) + repr(e.metadata) for e in errors)]  # type: ignore[attr-defined]
    assert all(TOKEN not in text for text in texts)


class GatedTransport(httpx.AsyncBaseTransport):
    """Holds requests until `limit` are in flight at once, counting the most ever in flight."""

    def __init__(self, limit: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.limit = limit
        self.in_flight = self.max_in_flight = 0
        self.full = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.in_flight >= self.limit:
            self.full.set()
        try:
            await asyncio.wait_for(self.full.wait(), timeout=10)
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_concurrency_is_bounded(fake, clock):
    transport = GatedTransport(limit=3)
    async with client(fake, clock, concurrency=3, transport=transport) as github:
        pulls = await asyncio.gather(*(github.pull(API, n) for n in range(1, 13)))

    assert [pr["number"] for pr in pulls] == list(range(1, 13))
    assert transport.max_in_flight == 3
    assert fake.max_in_flight <= 3


async def test_convenience_endpoints(fake, clock):
    async with client(fake, clock) as github:
        repos = [repo async for repo in github.org_repositories("ghpulse-demo")]
        releases = await github.releases(API)
        pr = await github.pull(API, 12)

    assert [(r["name"], r["archived"]) for r in repos] == [
        ("api", False),
        ("infra", False),
        ("legacy", True),
        ("web", False),
    ]
    published = [r["published_at"] for r in releases if not r["draft"]]
    assert published == sorted(published, reverse=True)
    assert pr["additions"] > 0 and pr["merged"] is True
    assert fake.requests[0].query == {"per_page": "100", "type": "all"}


async def fetch_everything(github: GitHubClient, repo: str) -> dict[str, Any]:
    pulls = [pr async for page in github.pulls(repo) for pr in page.data]
    numbers = [pr["number"] for pr in pulls]
    return {
        "pulls": pulls,
        "details": await asyncio.gather(*(github.pull(repo, n) for n in numbers)),
        "reviews": await asyncio.gather(*(github.pull_reviews(repo, n) for n in numbers)),
        "commits": await asyncio.gather(*(github.pull_commits(repo, n) for n in numbers)),
        "releases": await github.releases(repo),
    }


async def test_faults_do_not_change_what_is_fetched(fake, clock):
    repo = "ghpulse-demo/infra"
    async with client(fake, clock) as github:
        clean = await fetch_everything(github, repo)
    fake.faults.fail_next(r"/pulls$", 502, count=2)
    fake.faults.drop_next(r"/pulls/\d+$", count=3)
    fake.faults.fail_next(r"/reviews$", 429, count=2, retry_after=2)
    fake.faults.secondary_limit(r"/commits$", count=2)
    fake.faults.fail_next(r"/releases$", 503)
    fake.budget.set(40, reset_in=600)

    async with client(fake, clock, max_retries=5) as github:
        faulty = await fetch_everything(github, repo)

    assert faulty == clean
    assert fake.faults.pending == []
    assert {0, 403, 429, 502, 503} <= {record.status for record in fake.requests}
