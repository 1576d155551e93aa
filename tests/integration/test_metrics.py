"""The Prometheus endpoints after real runs: scheduler and crawler in process, scraped over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from google.protobuf import duration_pb2
from prometheus_client.parser import text_string_to_metric_families

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from crawler_service.app import CrawlerApp
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.cluster import TERMINAL, Cluster, clocked_cluster, cluster
from tests.support.github import TOKEN, serve

INFRA = "ghpulse-demo/infra"
ON = "127.0.0.1:0"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with serve() as running:
        yield running


@pytest.fixture
async def c(tmp_path: Path, scheduler_db_url: str) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path, db=scheduler_db_url, metrics_listen=ON) as running:
        yield running


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def scheduler_url(c: Cluster) -> str:
    assert c.scheduler.metrics_server is not None
    return c.scheduler.metrics_server.url


async def add_crawler(c: Cluster, fake: FakeGitHub) -> CrawlerApp:
    return await c.add_crawler(
        github_api_url=fake.url, github_token=TOKEN, plugins="", metrics_listen=ON
    )


async def crawl(c: Cluster, *repositories: str) -> str:
    response = await c.trigger(*repositories)
    run = await c.wait_for_state(response.run.id, *TERMINAL)
    assert run.state == runs_pb2.RUN_STATE_SUCCEEDED
    return response.run.id


async def test_after_crawls_both_endpoints_report_them(c: Cluster, fake: FakeGitHub) -> None:
    crawler = await add_crawler(c, fake)
    await crawl(c, INFRA)
    await crawl(c, INFRA)  # incremental: unchanged pages answer 304

    s = await scrape(scheduler_url(c))
    assert value(s, "ghpulse_runs", job="crawl", state="succeeded") == 2
    assert value(s, "ghpulse_queue_depth") == 0
    assert value(s, "ghpulse_runs_triggered_total", job="crawl", disposition="created") == 2
    assert value(s, "ghpulse_run_state_changes_total", state="succeeded") == 2
    assert value(s, "ghpulse_run_duration_seconds_count", job="crawl", state="succeeded") == 2
    for step in ("fetch", "upsert", "link", "classify", "export"):
        labels = {"job": "crawl", "step": step, "state": "succeeded"}
        assert value(s, "ghpulse_step_duration_seconds_count", **labels) == 2
    assert value(s, "ghpulse_crawlers_connected") == 1
    assert (
        value(s, "ghpulse_crawler_slots_connected") == value(s, "ghpulse_crawler_slots_free") == 2
    )
    assert value(s, "ghpulse_watchers_active") == 0

    assert crawler.metrics_server is not None
    k = await scrape(crawler.metrics_server.url)
    assert (
        value(k, "ghpulse_crawler_steps_total", job="crawl", step="fetch", outcome="succeeded") == 2
    )
    assert (
        value(
            k,
            "ghpulse_crawler_step_duration_seconds_count",
            job="crawl",
            step="export",
            outcome="succeeded",
        )
        == 2
    )
    assert value(k, "ghpulse_crawler_attempts_running") == 0
    assert value(k, "ghpulse_crawler_slots") == 2
    ok, not_modified = (value(k, "ghpulse_github_requests_total", status=s) for s in ("200", "304"))
    assert ok + not_modified == len([r for r in fake.requests if r.method == "GET"])
    assert not_modified == value(k, "ghpulse_github_not_modified_total") > 0
    assert value(k, "ghpulse_github_not_modified_ratio") == pytest.approx(
        not_modified / (ok + not_modified)
    )
    assert 0 < value(k, "ghpulse_github_rate_limit_remaining") < 5000
    # With a token the changed PRs came through GraphQL (the second crawl sent no query).
    queries = [r for r in fake.requests if r.method == "POST"]
    assert value(k, "ghpulse_github_graphql_queries_total", status="200") == len(queries) == 1
    assert value(k, "ghpulse_github_graphql_points_total") == sum(fake.graphql_points) == 1
    assert value(k, "ghpulse_github_graphql_rate_limit_remaining") == 4999


async def test_waiting_runs_and_watchers(c: Cluster) -> None:
    # No crawler: the run waits, and a watcher follows it.
    response = await c.trigger(INFRA)
    call = c.stub.WatchRun(spb.WatchRunRequest(run_id=response.run.id))
    first = await call.read()
    assert isinstance(first, spb.WatchRunResponse) and first.HasField("snapshot")

    s = await scrape(scheduler_url(c))
    assert value(s, "ghpulse_queue_depth") == 1
    assert value(s, "ghpulse_runs", job="crawl", state="pending") == 1
    assert value(s, "ghpulse_watchers_active") == 1
    assert value(s, "ghpulse_crawlers_connected") == 0
    call.cancel()


async def test_a_run_cancelled_before_it_started_is_counted_not_timed(c: Cluster) -> None:
    response = await c.trigger(INFRA)
    await c.stub.CancelRun(spb.CancelRunRequest(run_id=response.run.id, reason="test"))

    s = await scrape(scheduler_url(c))
    assert value(s, "ghpulse_runs", job="crawl", state="cancelled") == 1
    assert value(s, "ghpulse_run_state_changes_total", state="cancelled") == 1
    timed = (
        "ghpulse_run_duration_seconds_count",
        frozenset({("job", "crawl"), ("state", "cancelled")}),
    )
    assert timed not in s


class AheadClock:
    """The system's clock, moved ahead by the test when it wants time to pass."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead


async def test_a_run_the_sweep_failed_is_timed_at_the_next_scrape(
    tmp_path: Path, scheduler_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    clock = AheadClock()
    # Leases far longer than the deadline: moving the clock past the deadline expires no lease.
    cluster_of = clocked_cluster(
        tmp_path, clock, db=scheduler_db_url, metrics_listen=ON, lease_ttl=86_400.0
    )
    async with cluster_of as c:
        await c.add_crawler()  # the test jobs: "test/gated" waits in step beta
        deadline = duration_pb2.Duration()
        deadline.FromTimedelta(timedelta(hours=1))
        run_id = (await c.trigger("test/gated", deadline=deadline)).run.id
        # Alpha has succeeded, beta waits at its gate: the deadline passes now.
        await c.wait_for_step(run_id, "beta")
        clock.ahead = timedelta(hours=2)
        run = await c.wait_for_state(run_id, *TERMINAL)
        assert run.state == runs_pb2.RUN_STATE_FAILED
        assert run.error.code == "DEADLINE_EXCEEDED", run.error

        s = await scrape(scheduler_url(c))
    assert value(s, "ghpulse_run_duration_seconds_count", job="crawl", state="failed") == 1
    alpha = {"job": "crawl", "step": "alpha", "state": "succeeded"}
    beta = {"job": "crawl", "step": "beta", "state": "failed"}
    assert value(s, "ghpulse_step_duration_seconds_count", **alpha) == 1
    assert value(s, "ghpulse_step_duration_seconds_count", **beta) == 1


async def test_openmetrics_other_paths_and_methods(c: Cluster) -> None:
    url = scheduler_url(c)
    async with httpx.AsyncClient() as client:
        open_metrics = await client.get(url, headers={"Accept": "application/openmetrics-text"})
        missing = await client.get(url.replace("/metrics", "/nope"))
        posted = await client.post(url)
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")
    assert (missing.status_code, posted.status_code) == (404, 405)


async def test_metrics_are_off_unless_configured(tmp_path: Path) -> None:
    async with cluster(tmp_path) as plain:
        crawler = await plain.add_crawler()
        assert plain.scheduler.metrics_server is None
        assert crawler.metrics_server is None


async def test_stopping_closes_the_port(tmp_path: Path) -> None:
    async with cluster(tmp_path, metrics_listen=ON) as running:
        url = scheduler_url(running)
        await scrape(url)
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url)
