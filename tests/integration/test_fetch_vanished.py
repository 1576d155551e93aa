"""A pull request listed, then gone (404) before its detail, reviews or commits are fetched: it is
skipped with a reason, what the list gave is stored, the run goes on, and the next crawl retries
it. On SQLite and PostgreSQL, against the fake GitHub over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from common.jobs import CrawlSpec
from crawler_service.data.models import PullRequest
from crawler_service.data.store import CrawlerStore
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.crawl import GADGETS, Runner, client, make_dataset, make_runner


@dataclass
class Crawl:
    runner: Runner
    store: CrawlerStore
    fake: FakeGitHub


@pytest.fixture
async def crawl(crawler_db_url: str, tmp_path: Path) -> AsyncIterator[Crawl]:
    with FakeGitHub(make_dataset()) as fake:
        async with await CrawlerStore.open(crawler_db_url) as store, client(fake) as github:
            yield Crawl(make_runner(store, github, tmp_path / "exports"), store, fake)


async def _titles(store: CrawlerStore) -> dict[int, str]:
    rows = await store.select(
        sa.select(PullRequest.number, PullRequest.title).where(PullRequest.repository == GADGETS)
    )
    return dict(rows)  # type: ignore[arg-type]


def _requests_for(fake: FakeGitHub, path: str) -> int:
    return sum(1 for r in fake.requests if r.path == path)


@pytest.mark.parametrize("gone", ["", "/reviews", "/commits"])
async def test_a_vanished_pull_request_is_skipped_then_retried(crawl: Crawl, gone: str) -> None:
    runner, store, fake = crawl.runner, crawl.store, crawl.fake
    path = f"/repos/{GADGETS}/pulls/3{gone}"
    fake.faults.fail_next(f"^{path}$", 404, message="Not Found")

    first = await runner.run(CrawlSpec((GADGETS,)))

    assert first["repositories_fetched"] == [GADGETS]
    assert first["failed_repositories"] == []
    [skipped] = first["skipped_pull_requests"]
    assert (skipped["repository"], skipped["number"]) == (GADGETS, 3)
    assert "listed, then gone" in skipped["reason"]
    assert first["prs_updated"] == 4
    # What the list gave is stored: all five PRs are there.
    assert await _titles(store) == {n: f"Gadget {n}" for n in range(1, 6)}

    second = await runner.run(CrawlSpec((GADGETS,)), run_id="run-2")

    assert second["skipped_pull_requests"] == []
    assert second["prs_updated"] == 1  # only the skipped one: the others are unchanged
    assert _requests_for(fake, path) == 2
    known = await store.known_pulls(GADGETS)
    assert known[3] is not None  # its detail is stored now: the third crawl leaves it alone

    third = await runner.run(CrawlSpec((GADGETS,)), run_id="run-3")

    assert third["prs_updated"] == 0
    assert _requests_for(fake, path) == 2
