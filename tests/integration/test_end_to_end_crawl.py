"""The real crawl job through the real orchestration: scheduler, crawler worker, fake GitHub over
HTTP, and the query API's non-blocking backfill path with the real scheduler deduplicating it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text

from common.db import sync_url
from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.pull_request_service_pb2_grpc import PullRequestServiceStub
from crawler_service.app import CrawlerApp
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.cluster import TERMINAL, Cluster, cluster
from tests.support.github import serve

API = "ghpulse-demo/api"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with serve() as running:
        yield running


@pytest.fixture
async def c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path) as running:
        yield running


async def crawler(c: Cluster, fake: FakeGitHub) -> CrawlerApp:
    return await c.add_crawler("real", plugins="", github_api_url=fake.url)


async def test_crawl_an_organization_then_query_it(c: Cluster, fake: FakeGitHub) -> None:
    app = await crawler(c, fake)
    triggered = await c.stub.TriggerRun(
        spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(organization="ghpulse-demo"))
    )
    run = await c.wait_for_state(triggered.run.id, *TERMINAL)
    assert run.state == runs_pb2.RUN_STATE_SUCCEEDED, run.error
    # A fan-out parent: a crawler planned it, then one child run crawled each repository.
    assert [s.name for s in run.steps] == ["plan", "repositories"]
    children = await c.stub.ListRuns(spb.ListRunsRequest(parent_run_id=run.id))
    assert len(children.runs) == run.children_total == 3
    for child in children.runs:
        assert [s.name for s in child.steps] == ["fetch", "upsert", "link", "classify", "export"]
    output: dict[str, Any] = dict(run.output)
    assert sorted(output["repositories_fetched"]) == [
        "ghpulse-demo/api",
        "ghpulse-demo/infra",
        "ghpulse-demo/web",
    ]  # the archived repository is skipped
    assert output["prs_updated"] > 100
    async with grpc.aio.insecure_channel(app.address) as channel:
        prs = PullRequestServiceStub(channel)
        page = await prs.ListPullRequests(
            ppb.ListPullRequestsRequest(repository=API, page_size=500)
        )
        assert page.links_complete
        by_number = {pr.number: pr for pr in page.pull_requests}
        assert [(i.repository, i.number) for i in by_number[1].closing_issues] == [(API, 12)]
        stats = await prs.GetRepositoryStats(ppb.GetRepositoryStatsRequest(repository=API))
        assert stats.total == len(page.pull_requests)


async def test_queries_never_wait_and_start_one_backfill(
    c: Cluster, fake: FakeGitHub, tmp_path: Path
) -> None:
    app = await crawler(c, fake)
    request = spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(repositories=[API]))
    crawled = await c.wait_for_state((await c.stub.TriggerRun(request)).run.id, *TERMINAL)
    assert crawled.state == runs_pb2.RUN_STATE_SUCCEEDED
    forget_links(app)  # as if crawled by a version that did not compute links

    async with grpc.aio.insecure_channel(app.address) as channel:
        prs = PullRequestServiceStub(channel)
        question = ppb.ListClosingIssuesRequest(repository=API, pull_number=1)
        answers = await asyncio.gather(*(prs.ListClosingIssues(question) for _ in range(20)))
        waiting = [a for a in answers if not a.links_complete]
        # Answered at once with what is stored; late ones may already see the finished backfill.
        assert waiting
        run_ids = {a.backfill_run_id for a in waiting}
        assert len(run_ids) == 1 and "" not in run_ids
        backfill = await c.wait_for_state(run_ids.pop(), *TERMINAL)
        assert backfill.state == runs_pb2.RUN_STATE_SUCCEEDED
        assert backfill.trigger == runs_pb2.TRIGGER_BACKFILL
        assert backfill.concurrency_key == f"links:{API}"
        after = await prs.ListClosingIssues(question)
    assert after.links_complete and after.backfill_run_id == ""
    assert [(i.repository, i.number) for i in after.closing_issues] == [(API, 12)]


def forget_links(app: CrawlerApp) -> None:
    engine = create_engine(sync_url(app.settings.db))
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM closing_links"))
            conn.execute(text("UPDATE repositories SET links_computed_at = NULL"))
    finally:
        engine.dispose()
