"""The GitHub client over an in-memory transport: headers, URLs, transport failures."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from crawler_service.github.client import (
    API_VERSION,
    GitHubClient,
    GitHubGone,
    GitHubUnavailable,
)
from tests.support.github import TOKEN, FakeClock

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, base_url: str = "https://api.github.com", **options) -> GitHubClient:
    clock = FakeClock()
    return GitHubClient(
        base_url,
        TOKEN,
        sleep=clock.sleep,
        clock=clock,
        transport=httpx.MockTransport(handler),
        **options,
    )


async def test_sends_github_headers():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True}, headers={"etag": '"abc"'})

    async with client(handler) as github:
        response = await github.get("/rate_limit", etag='"old"')

    headers = seen[0].headers
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == API_VERSION
    assert headers["user-agent"].startswith("ghpulse/")
    assert headers["if-none-match"] == '"old"'
    assert (response.status, response.data, response.etag) == (200, {"ok": True}, '"abc"')


async def test_no_authorization_header_without_a_token():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    async with GitHubClient("https://api.github.com", transport=httpx.MockTransport(handler)) as gh:
        await gh.get("/rate_limit")
    assert "authorization" not in seen[0].headers


@pytest.mark.parametrize(
    ("base", "path", "params", "expected"),
    [
        ("https://api.github.com", "/repos/o/r", None, "https://api.github.com/repos/o/r"),
        ("https://api.github.com/", "repos/o/r", None, "https://api.github.com/repos/o/r"),
        ("https://ghe.example/api/v3", "/repos/o/r", None, "https://ghe.example/api/v3/repos/o/r"),
        ("https://ghe.example/api/v3/", "/repos/o/r", None, "https://ghe.example/api/v3/repos/o/r"),
        (
            "https://api.github.com",
            "/repos/o/r/pulls",
            {"state": "all", "per_page": 100, "direction": "desc"},
            "https://api.github.com/repos/o/r/pulls?direction=desc&per_page=100&state=all",
        ),
        (
            "https://ghe.example/api/v3",
            "https://ghe.example/api/v3/repos/o/r/pulls?page=2",
            None,
            "https://ghe.example/api/v3/repos/o/r/pulls?page=2",
        ),
    ],
)
async def test_url_joining(base, path, params, expected):
    async with client(lambda _: httpx.Response(200), base) as github:
        assert github.url(path, params) == expected


async def test_timeouts_and_resets_are_retried_then_unavailable():
    failures = [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.ReadError("reset")]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json=[1])

    async with client(handler, retry_backoff=0.5, max_retries=3) as github:
        assert (await github.get("/x")).data == [1]
        failures.extend([httpx.ReadTimeout("slow")] * 5)
        with pytest.raises(GitHubUnavailable) as caught:
            await github.get("/x")

    assert caught.value.status is None
    assert caught.value.attempts == 4
    assert github.stats.requests == 8


async def test_gone_is_permanent():
    async with client(lambda _: httpx.Response(410, json={"message": "Gone"})) as github:
        with pytest.raises(GitHubGone, match="Gone"):
            await github.repository("o/r")


@pytest.mark.parametrize("name", ["o", "o/", "/r", "o/r/x", ""])
async def test_repository_names_are_validated(name):
    async with client(lambda _: httpx.Response(200, json={})) as github:
        with pytest.raises(ValueError, match="owner/repo"):
            await github.repository(name)


async def test_stats_count_statuses_and_the_remaining_budget():
    answers = [
        httpx.Response(502),
        httpx.Response(200, json=[], headers={"x-ratelimit-remaining": "41"}),
        httpx.Response(304, headers={"x-ratelimit-remaining": "41"}),
    ]
    async with client(lambda _: answers.pop(0)) as github:
        await github.get("/a")
        not_modified = await github.get("/b", etag='"e"')

    assert (not_modified.status, not_modified.data, not_modified.etag) == (304, None, '"e"')
    assert github.stats.requests == 3
    assert github.stats.not_modified == 1
    assert dict(github.stats.by_status) == {502: 1, 200: 1, 304: 1}
    assert github.stats.rate_limit_remaining == 41
