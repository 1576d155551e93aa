"""Crawl the real recorded panjf2000/ants data (tests/data/github-ants) and check facts by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from common.jobs import CrawlSpec
from crawler_service.data.models import ClosingLink, PullRequest
from crawler_service.data.store import CrawlerStore
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.crawl import client, make_runner

DATA = Path(__file__).parents[1] / "data" / "github-ants"
ANTS = "panjf2000/ants"


@pytest.fixture
def ants() -> Iterator[FakeGitHub]:
    if not DATA.exists():
        pytest.skip(f"{DATA} is missing")
    with FakeGitHub(DATA) as server:
        yield server


async def test_crawl_of_recorded_ants_data(ants: FakeGitHub, tmp_path: Path):
    async with (
        await CrawlerStore.open(f"sqlite:///{tmp_path}/c.db", migrate=True) as store,
        client(ants) as github,
    ):
        output = await make_runner(store, github, tmp_path / "exports").run(CrawlSpec((ANTS,)))

        assert output["prs_updated"] == 49
        states = await store.select(
            sa.select(PullRequest.state, sa.func.count()).group_by(PullRequest.state)
        )
        assert dict(states) == {"merged": 26, "closed": 19, "open": 4}
        links = await store.select(
            sa.select(ClosingLink.pr_number, ClosingLink.issue_number, ClosingLink.source)
        )
        # PR 11 closes #7 from a commit message, but its base is `develop`, not `master`.
        assert sorted(links) == [
            (4, 3, "description"), (23, 22, "description"), (114, 113, "description"),
            (189, 188, "description"), (192, 191, "description"), (210, 205, "description"),
        ]  # fmt: skip
        times = await store.select(
            sa.select(
                PullRequest.number,
                PullRequest.coding_seconds,
                PullRequest.pickup_seconds,
                PullRequest.review_seconds,
            ).where(PullRequest.number.in_([4, 41]))
        )
        assert sorted(times) == [
            # #4: its one commit is newer than the PR; no review, so pickup runs to the merge
            # (2018-07-25T08:19:30Z -> 2018-07-26T02:32:41Z).
            (4, 0.0, 65591.0, None),
            # #41: commit 03:22:00, created 03:24:27; the author's own reviews don't count, the
            # first by panjf2000 is at 09:19:55; merged 10:55:19.
            (41, 147.0, 21328.0, 5724.0),
        ]
