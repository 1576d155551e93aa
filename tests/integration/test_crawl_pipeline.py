"""The crawl job against the fake GitHub over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from common.jobs import CrawlSpec
from crawler_service.data.models import FetchState, PullRequest, Repository
from crawler_service.data.store import CrawlerStore
from crawler_service.errors import PermanentError, TransientError
from crawler_service.github.client import GitHubClient
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.crawl import (
    ARCHIVED,
    FILLERS,
    GADGETS,
    ORG,
    WIDGETS,
    Runner,
    client,
    make_dataset,
    make_runner,
    snapshot,
    ts,
)

DETAIL = re.compile(r"^/repos/[^/]+/[^/]+/pulls/\d+(/reviews|/commits)?$")
WIDGET_PRS = 4 + FILLERS


@pytest.fixture
async def store(crawler_db_url: str) -> AsyncIterator[CrawlerStore]:
    async with await CrawlerStore.open(crawler_db_url) as opened:
        yield opened


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(make_dataset()) as server:
        yield server


@pytest.fixture
async def github(fake: FakeGitHub) -> AsyncIterator[GitHubClient]:
    async with client(fake) as opened:
        yield opened


@pytest.fixture
def runner(store: CrawlerStore, github: GitHubClient, tmp_path: Path) -> Runner:
    return make_runner(store, github, tmp_path / "exports")


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def detail_requests(fake: FakeGitHub) -> list[str]:
    return [r.path for r in fake.requests if DETAIL.match(r.path)]


async def test_full_crawl_stores_every_pull_request(runner: Runner, store: CrawlerStore):
    output = await runner.run(CrawlSpec((WIDGETS, GADGETS)))

    assert output["repositories_fetched"] == [WIDGETS, GADGETS]
    assert output["prs_updated"] == WIDGET_PRS + 5
    assert output["failed_repositories"] == []
    assert output["requests"] >= 3 * (WIDGET_PRS + 5)
    count = await store.select(sa.select(sa.func.count()).select_from(PullRequest))
    assert count[0][0] == WIDGET_PRS + 5
    # One progress report per pull request fetched, counting up to the repository's total.
    per_pr = [
        (current, total, message)
        for step, current, total, message in runner.progress
        if step == "fetch" and message.startswith(f"{WIDGETS}#")
    ]
    assert [(current, total) for current, total, _ in per_pr] == [
        (i, WIDGET_PRS) for i in range(1, WIDGET_PRS + 1)
    ]
    assert all(
        re.fullmatch(rf"{WIDGETS}#\d+ \({current}/{WIDGET_PRS}\)", message)
        for current, _, message in per_pr
    )
    assert sorted(Path(p).name for p in output["exports"]) == [
        "gadgets.csv",
        "gadgets.jsonl",
        "widgets.csv",
        "widgets.jsonl",
    ]


async def test_no_change_incremental_crawl_makes_no_detail_requests(
    runner: Runner, fake: FakeGitHub
):
    await runner.run(CrawlSpec((WIDGETS,)), run_id="first")
    fake.reset_requests()

    output = await runner.run(CrawlSpec((WIDGETS,)), run_id="second")

    assert detail_requests(fake) == []
    assert output["prs_updated"] == 0
    assert output["not_modified"] >= 1  # the first list page answered 304


async def test_one_edited_pull_request_is_the_only_one_refetched(
    runner: Runner, fake: FakeGitHub, store: CrawlerStore
):
    await runner.run(CrawlSpec((WIDGETS,)), run_id="first")
    fake.dataset.touch_pull(WIDGETS, 3, title="Renamed")
    fake.reset_requests()

    output = await runner.run(CrawlSpec((WIDGETS,)), run_id="second")

    assert sorted(detail_requests(fake)) == [
        f"/repos/{WIDGETS}/pulls/3",
        f"/repos/{WIDGETS}/pulls/3/commits",
        f"/repos/{WIDGETS}/pulls/3/reviews",
    ]
    assert output["prs_updated"] == 1
    titles = await store.select(sa.select(PullRequest.title).where(PullRequest.number == 3))
    assert titles == [("Renamed",)]


async def test_refresh_refetches_everything(runner: Runner, fake: FakeGitHub):
    await runner.run(CrawlSpec((WIDGETS,)), run_id="first")
    fake.reset_requests()

    output = await runner.run(CrawlSpec((WIDGETS,), refresh=True), run_id="second")

    assert output["prs_updated"] == WIDGET_PRS
    assert len([p for p in detail_requests(fake) if p.endswith(("reviews", "commits"))]) == (
        2 * WIDGET_PRS
    )
    assert not any(r.status == 304 for r in fake.requests)


async def test_crawl_through_faults_equals_a_clean_crawl(
    runner: Runner, fake: FakeGitHub, store: CrawlerStore, tmp_path: Path
):
    clean_url = f"sqlite:///{tmp_path}/clean.db"
    async with await CrawlerStore.open(clean_url, migrate=True) as clean_store:
        async with client(fake) as clean_github:
            clean = make_runner(clean_store, clean_github, tmp_path / "clean")
            await clean.run(CrawlSpec((WIDGETS, GADGETS)))
        expected = await snapshot(clean_store)
    fake.faults.secondary_limit(rf"/repos/{WIDGETS}/pulls$", retry_after=1)
    fake.faults.fail_next(r"/pulls/1/reviews$", 429, retry_after=1)
    fake.faults.fail_next(r"/pulls/\d+/commits$", 502, count=3)
    fake.faults.drop_next(r"/pulls/2$")
    fake.faults.fail_next(r"/releases$", 503)

    await runner.run(CrawlSpec((WIDGETS, GADGETS)))

    assert fake.faults.pending == []
    assert await snapshot(store) == expected


async def test_permanent_failures_are_recorded_and_the_others_go_on(runner: Runner):
    output = await runner.run(CrawlSpec((WIDGETS, "acme/missing", ARCHIVED)))

    assert output["repositories_fetched"] == [WIDGETS]
    failed = {f["repository"]: f["code"] for f in output["failed_repositories"]}
    assert failed == {"acme/missing": "GITHUB_NOT_FOUND", ARCHIVED: "GITHUB_ARCHIVED"}


async def test_every_repository_failing_permanently_fails_the_run(runner: Runner):
    with pytest.raises(PermanentError) as raised:
        await runner.run(CrawlSpec(("acme/missing", ARCHIVED)))
    assert raised.value.code == "ALL_REPOSITORIES_FAILED"


async def test_transient_failure_retries_and_skips_completed_repositories(
    runner: Runner, fake: FakeGitHub
):
    fake.faults.fail_next(rf"^/repos/{GADGETS}$", 502, count=100)
    with pytest.raises(TransientError):
        await runner.run(CrawlSpec((WIDGETS, GADGETS)), run_id="r", attempt=1)
    fake.faults.clear()
    fake.reset_requests()

    output = await runner.run(CrawlSpec((WIDGETS, GADGETS)), run_id="r", attempt=2)

    assert not any(WIDGETS in r.path for r in fake.requests)
    assert output["repositories_fetched"] == [WIDGETS, GADGETS]
    assert output["prs_updated"] == WIDGET_PRS + 5


async def test_organization_means_its_non_archived_repositories(runner: Runner):
    output = await runner.run(CrawlSpec(organization=ORG))

    assert sorted(output["repositories_fetched"]) == [GADGETS, WIDGETS]


async def test_hand_checked_metrics_and_links(runner: Runner, store: CrawlerStore):
    await runner.run(CrawlSpec((WIDGETS,)))

    rows = await store.select(
        sa.select(
            PullRequest.number,
            PullRequest.state,
            PullRequest.size_class,
            PullRequest.coding_seconds,
            PullRequest.pickup_seconds,
            PullRequest.review_seconds,
            PullRequest.deploy_seconds,
            PullRequest.author,
        )
        .where(PullRequest.number < 10)
        .order_by(PullRequest.number)
    )
    hour = 3600.0
    assert [tuple(r) for r in rows] == [
        # coding 1 day; pickup: bob at 14:00 (self and bot reviews ignored); review to merge;
        # deploy: v1 published a day after the merge.
        (1, "merged", "XS", 24 * hour, 4 * hour, 20 * hour, 24 * hour, "alice"),
        # No review: pickup runs to the merge; v2 (the first release after it) 18 h later.
        (2, "merged", "XXL", 0.0, 6 * hour, None, 18 * hour, "bob"),
        (3, "open", "M", None, None, None, None, "carol"),
        (4, "closed", "XS", None, None, None, None, ""),
    ]
    output = await runner.run(CrawlSpec((WIDGETS,)), run_id="again")
    export = Path(next(p for p in output["exports"] if p.endswith(".jsonl")))
    records = {r["number"]: r for r in read_jsonl(export)}
    assert records[1]["closing_issues"] == [
        {"repository": WIDGETS, "number": 10, "source": "description"},
        {"repository": WIDGETS, "number": 12, "source": "commit_message"},
    ]
    assert records[2]["closing_issues"] == [
        {"repository": GADGETS, "number": 3, "source": "description"}
    ]
    assert records[3]["closing_issues"] == []  # base is not the default branch
    assert records[1]["merged_at"] == "2024-03-02T10:00:00Z"


async def test_recalculate_rebuilds_from_raw_data_without_github(
    runner: Runner, fake: FakeGitHub, store: CrawlerStore
):
    from common.jobs import RecalculateSpec

    await runner.run(CrawlSpec((WIDGETS,)))
    expected = await snapshot(store)
    async with store.engine.begin() as conn:
        await conn.execute(sa.delete(PullRequest))
        await conn.execute(sa.update(Repository).values(links_computed_at=None))
    fake.reset_requests()

    output = await runner.run(
        RecalculateSpec((WIDGETS,), steps=("upsert", "link", "classify", "export"))
    )

    assert fake.requests == []
    assert output["upsert"] == {"prs_upserted": WIDGET_PRS}
    assert await snapshot(store) == expected
    marker = await store.select(sa.select(Repository.links_computed_at))
    assert marker[0][0] is not None


async def test_concurrent_crawls_of_one_repository_stay_safe(
    runner: Runner, store: CrawlerStore, fake: FakeGitHub
):
    import asyncio

    first, second = await asyncio.gather(
        runner.run(CrawlSpec((WIDGETS,)), run_id="a"),
        runner.run(CrawlSpec((WIDGETS,)), run_id="b"),
    )

    assert first["prs_updated"] + second["prs_updated"] >= WIDGET_PRS
    state = await store.select(sa.select(FetchState.watermark))
    assert state == [(ts("2024-03-07T00:00:00Z"),)]
    count = await store.select(sa.select(sa.func.count()).select_from(PullRequest))
    assert count[0][0] == WIDGET_PRS
    # A sweep that finished later but saw older data never moves the watermark back.
    assert state[0][0] is not None
    from crawler_service.data.records import FetchResult

    moved = await store.complete_sweep(
        WIDGETS, state[0][0] - timedelta(days=1), {}, FetchResult(WIDGETS, WIDGETS, True), "c"
    )
    assert moved is False
    assert await store.select(sa.select(FetchState.watermark)) == state


async def test_github_token_never_reaches_outputs_or_the_database(
    runner: Runner, store: CrawlerStore, github: GitHubClient
):
    output = await runner.run(CrawlSpec((WIDGETS,)))

    assert "ghp_secret_token_123" not in json.dumps(output)
    dump = await store.select(sa.select(FetchState.etags))
    assert "ghp_secret_token_123" not in json.dumps([tuple(r) for r in dump])
