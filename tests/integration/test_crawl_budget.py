"""What a crawl costs with GHPULSE_GITHUB_API=auto: GraphQL in bulk only when the free conditional
probe of the first REST list page says something changed; on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.jobs import CrawlSpec
from crawler_service.data.store import CrawlerStore
from crawler_service.errors import PermanentError
from crawler_service.github.graphql import GraphQLClient
from crawler_service.jobs.steps.fetch import API_AUTO, API_GRAPHQL
from ghpulse.testing.fake_github import FakeGitHub, RequestRecord
from tests.support.crawl import (
    GADGETS,
    WIDGETS,
    Runner,
    client,
    graphql_client,
    make_dataset,
    make_runner,
)
from tests.support.github import ANTS, FakeClock, ants_dataset


@pytest.fixture
async def store(crawler_db_url: str) -> AsyncIterator[CrawlerStore]:
    async with await CrawlerStore.open(crawler_db_url) as opened:
        yield opened


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub(make_dataset()) as server:
        yield server


async def crawl(
    store: CrawlerStore, fake: FakeGitHub, tmp_path: Path, spec: CrawlSpec, api: str = API_AUTO
) -> dict[str, Any]:
    """One crawl run (a new run id each time) through `api`."""
    async with client(fake) as github, graphql_client(fake) as graphql:
        runner: Runner = make_runner(store, github, tmp_path / "exports", graphql=graphql, api=api)
        return await runner.run(spec, run_id=f"run-{next(_RUN_IDS)}")


_RUN_IDS = itertools.count(1)


def queries_sent(fake: FakeGitHub) -> list[RequestRecord]:
    return [r for r in fake.requests if r.method == "POST"]


async def test_no_change_crawl_is_all_304_and_sends_no_query(store, fake, tmp_path):
    spec = CrawlSpec((WIDGETS, GADGETS))
    first = await crawl(store, fake, tmp_path, spec)
    assert first["graphql_queries"] > 0
    fake.reset_requests()
    points = len(fake.graphql_points)

    again = await crawl(store, fake, tmp_path, spec)

    assert {r.status for r in fake.requests} == {304}
    # Per repository: the repository object, the first list page and the releases.
    assert [r.path for r in fake.requests] == [
        f"/repos/{repo}{tail}" for repo in spec.repositories for tail in ("", "/pulls", "/releases")
    ]
    assert len(fake.graphql_points) == points
    assert (again["requests"], again["not_modified"], again["prs_updated"]) == (6, 6, 0)
    assert (again["graphql_queries"], again["graphql_points"]) == (0, 0)


async def test_one_changed_pull_costs_one_small_query(store, fake, tmp_path):
    await crawl(store, fake, tmp_path, CrawlSpec((WIDGETS,)))
    fake.dataset.touch_pull(WIDGETS, 2, title="Big change, renamed")
    fake.reset_requests()

    output = await crawl(store, fake, tmp_path, CrawlSpec((WIDGETS,)))

    assert output["prs_updated"] == 1
    assert (output["graphql_queries"], output["graphql_points"]) == (1, 1)
    assert [(r.path, r.status) for r in fake.requests] == [
        (f"/repos/{WIDGETS}", 304),
        (f"/repos/{WIDGETS}/pulls", 200),
        ("/graphql", 200),
        (f"/repos/{WIDGETS}/releases", 304),
    ]


async def test_nothing_changed_behind_a_changed_etag_sends_no_query(store, fake, tmp_path):
    await crawl(store, fake, tmp_path, CrawlSpec((WIDGETS,)))
    # A change the list shows but that leaves every updated_at alone (GitHub's list pages hold
    # fields the sweep ignores): the probe's ETag differs, yet no PR needs fetching.
    fake.dataset.require(WIDGETS).pulls[3]["labels"] = [{"name": "later"}]
    fake.reset_requests()

    output = await crawl(store, fake, tmp_path, CrawlSpec((WIDGETS,)))

    assert output["prs_updated"] == 0
    assert output["graphql_queries"] == 0
    assert [r.status for r in fake.requests] == [304, 200, 304]


async def test_graphql_mode_skips_the_probe(store, fake, tmp_path):
    await crawl(store, fake, tmp_path, CrawlSpec((GADGETS,)), API_GRAPHQL)
    fake.reset_requests()

    output = await crawl(store, fake, tmp_path, CrawlSpec((GADGETS,)), API_GRAPHQL)

    assert [(r.path, r.status) for r in fake.requests] == [
        (f"/repos/{GADGETS}", 304),
        ("/graphql", 200),
        (f"/repos/{GADGETS}/releases", 304),
    ]
    assert (output["prs_updated"], output["graphql_queries"]) == (0, 1)


async def test_ants_full_crawl_takes_at_most_ten_requests(store, tmp_path):
    with FakeGitHub(ants_dataset()) as fake:
        output = await crawl(store, fake, tmp_path, CrawlSpec((ANTS,)))
        requests = fake.requests

    assert output["prs_updated"] == 49
    assert len(requests) <= 10
    assert output["requests"] + output["graphql_queries"] == len(requests)
    assert [(r.method, r.path) for r in requests] == [
        ("GET", f"/repos/{ANTS}"),
        ("GET", f"/repos/{ANTS}/pulls"),
        ("POST", "/graphql"),
        ("GET", f"/repos/{ANTS}/releases"),
    ]


async def test_a_rate_limited_crawl_waits_and_stores_everything(store, tmp_path):
    clock = FakeClock()
    with FakeGitHub(make_dataset(), clock=clock) as fake:
        output, runner, graphql = await _crawl_through_faults(store, fake, clock, tmp_path)

    assert output["prs_updated"] == 134
    assert [r.status for r in queries_sent(fake)][:4] == [200, 200, 502, 200]
    assert graphql.stats.by_status[502] == 1
    assert clock.sleeps[0] == 31.0  # the reset, then one jittered retry per failure
    assert any("GraphQL rate limited" in message for _s, _c, _t, message in runner.progress)
    exported = (tmp_path / "exports" / "acme" / "widgets.jsonl").read_text().splitlines()
    assert len(exported) == 134
    assert json.loads(exported[0])["repository"] == WIDGETS


async def _crawl_through_faults(
    store: CrawlerStore, fake: FakeGitHub, clock: FakeClock, tmp_path: Path
) -> tuple[dict[str, Any], Runner, GraphQLClient]:
    fake.faults.exhaust_primary("^/graphql$", reset_in=30)
    fake.faults.graphql_errors(partial=True)
    fake.faults.fail_next("^/graphql$", 502)
    options: dict[str, Any] = {"sleep": clock.sleep, "clock": clock}
    async with client(fake, **options) as github, graphql_client(fake, **options) as graphql:
        runner = make_runner(store, github, tmp_path / "exports", graphql=graphql)
        return await runner.run(CrawlSpec((WIDGETS,))), runner, graphql


async def test_auto_falls_back_to_rest_when_github_refuses_the_query(store, fake, tmp_path):
    # An older GitHub Enterprise, say, whose schema lacks a field the query asks for.
    fake.faults.graphql_errors("MAX_NODE_LIMIT_EXCEEDED", message="refused", count=5)

    output = await crawl(store, fake, tmp_path, CrawlSpec((GADGETS,)))

    assert output["prs_updated"] == 5
    assert output["graphql_queries"] == 0
    assert len(queries_sent(fake)) == 1
    assert len([r for r in fake.requests if r.path.endswith("/commits")]) == 5


async def test_graphql_mode_does_not_fall_back(store, fake, tmp_path):
    fake.faults.graphql_errors("MAX_NODE_LIMIT_EXCEEDED", message="refused", count=5)

    with pytest.raises(PermanentError, match="every repository failed"):
        await crawl(store, fake, tmp_path, CrawlSpec((GADGETS,)), API_GRAPHQL)
