"""The owner of the token's rate limit: learned once through `GET /user`, named per repository
in the run output (never the token), and the token may come from GITHUB_TOKEN_FILE."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from common.jobs import CrawlSpec
from crawler_service.data.store import CrawlerStore
from crawler_service.github.budget import TokenBudget
from crawler_service.github.client import GitHubClient
from crawler_service.github.owner import ANONYMOUS, identify
from crawler_service.settings import CrawlerSettings
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.crawl import (
    GADGETS,
    WIDGETS,
    client,
    instant_sleep,
    make_dataset,
    make_runner,
)

TOKEN = "ghp_owner_test_token_0123456789"


@pytest.fixture
async def store(crawler_db_url: str) -> AsyncIterator[CrawlerStore]:
    async with await CrawlerStore.open(crawler_db_url) as opened:
        yield opened


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(make_dataset(), user_login="octo-crawler") as server:
        yield server


async def test_the_owner_is_learned_once_and_named_per_repository(store, fake, tmp_path):
    github = client(fake, budget=TokenBudget(sleep=instant_sleep))
    async with github:
        runner = make_runner(store, github, tmp_path / "exports", api="rest")
        first = await runner.run(CrawlSpec((WIDGETS, GADGETS)), run_id="run-1")
        second = await runner.run(CrawlSpec((WIDGETS,)), run_id="run-2")

    owners = {WIDGETS: "octo-crawler", GADGETS: "octo-crawler"}
    assert first["github_owners"] == owners
    assert second["github_owners"] == {WIDGETS: "octo-crawler"}
    assert [r.path for r in fake.requests].count("/user") == 1
    assert "ghp_" not in repr(first)


async def test_without_a_token_the_owner_is_anonymous_and_nothing_is_asked(fake):
    async with GitHubClient(fake.url, None, sleep=instant_sleep) as github:
        assert await identify(github) == ANONYMOUS
    assert fake.requests == []


def test_the_token_is_read_from_github_token_file(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")

    settings = CrawlerSettings(github_token_file=str(path))

    assert settings.github_secret == TOKEN
    assert settings.uses_graphql


def test_github_token_wins_over_the_file(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text("ghp_from_the_file")

    assert CrawlerSettings(github_token=TOKEN, github_token_file=str(path)).github_secret == TOKEN


@pytest.mark.parametrize("content", ["", "two tokens\n", None])
def test_a_bad_token_file_is_refused_without_showing_it(tmp_path: Path, content: str | None):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)

    with pytest.raises(ValueError, match="GITHUB_TOKEN_FILE") as raised:
        CrawlerSettings(github_token_file=str(path))

    assert "two tokens" not in str(raised.value)
