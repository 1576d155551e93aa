"""Both services through PgBouncer (transaction pooling) in front of PostgreSQL: a crawl runs
end to end, with psycopg's prepared statements off (`?prepare_threshold=none`) and statement
timeouts set per transaction (`SET LOCAL`), never as startup options."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from common.db import postgres_url
from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1.pull_request_service_pb2_grpc import PullRequestServiceStub
from crawler_service.data.migrations import upgrade as upgrade_crawler
from ghpulse.testing.fake_github import FakeGitHub
from scheduler_service.db.migrations import upgrade as upgrade_scheduler
from tests.support import postgres
from tests.support.cluster import TERMINAL, Cluster, cluster
from tests.support.github import TOKEN, serve
from tests.support.pgbouncer import pgbouncer, stats

pytestmark = pytest.mark.postgres
API = "ghpulse-demo/api"


@pytest.fixture
def databases(pg_available: None) -> Iterator[tuple[str, str]]:
    """A migrated scheduler and crawler database (migrations go to PostgreSQL directly: they
    hold a session-level advisory lock, which transaction pooling cannot keep)."""
    with postgres.fresh("pgb_sched") as scheduler, postgres.fresh("pgb_crawl") as crawler:
        upgrade_scheduler(scheduler)
        upgrade_crawler(crawler)
        yield scheduler, crawler


@pytest.fixture
def bouncer(databases: tuple[str, str]) -> Iterator[int]:
    with pgbouncer([url.rsplit("/", 1)[1] for url in databases]) as port:
        yield port


def through(url: str, port: int) -> str:
    """`url` through PgBouncer on `port`, prepared statements off."""
    host, name = url.rsplit("/", 1)[0].rsplit(":", 1)[0], url.rsplit("/", 1)[1]
    return f"{host}:{port}/{name}?prepare_threshold=none"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with serve(token=TOKEN) as running:
        yield running


@pytest.fixture
async def c(
    tmp_path: Path, databases: tuple[str, str], bouncer: int, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    scheduler_db = through(databases[0], bouncer)
    async with cluster(tmp_path, db=scheduler_db, migrate=False) as running:
        yield running


def test_the_ghpulse_url_option_turns_prepared_statements_off():
    url, connect_args = postgres_url("postgresql://u@h:6432/d?prepare_threshold=none&sslmode=x")
    assert connect_args == {"prepare_threshold": None}
    assert url.query == {"sslmode": "x"}
    assert postgres_url("postgresql://u@h/d?prepare_threshold=5")[1] == {"prepare_threshold": 5}


async def test_a_crawl_runs_through_pgbouncer(
    c: Cluster, fake: FakeGitHub, databases: tuple[str, str], bouncer: int
) -> None:
    app = await c.add_crawler(
        "pooled",
        plugins="",
        github_api_url=fake.url,
        github_token=TOKEN,
        db=through(databases[1], bouncer),
        migrate=False,
    )
    # Twice: the second crawl reuses pooled server connections another client prepared nothing on.
    for _ in range(2):
        triggered = await c.trigger(API)
        run = await c.wait_for_state(triggered.run.id, *TERMINAL)
        assert run.state == runs_pb2.RUN_STATE_SUCCEEDED, run.error
    assert dict(run.output)["github_owners"] == {API: "ghpulse-fake"}
    async with grpc.aio.insecure_channel(app.address) as channel:
        prs = PullRequestServiceStub(channel)
        stats_answer = await prs.GetRepositoryStats(ppb.GetRepositoryStatsRequest(repository=API))
    assert stats_answer.total > 0

    pooled = stats(bouncer)
    scheduler_name, crawler_name = (url.rsplit("/", 1)[1] for url in databases)
    assert pooled[scheduler_name] > 0
    assert pooled[crawler_name] > 0
