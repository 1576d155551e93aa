"""A malicious GitHub is contained (the issue's attacks, now failing): the token goes only to the
configured API origin, names GitHub returns are checked before they become keys or paths, and
exports never leave the export directory; a client's `o/..` is refused before any request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.pull_request_service_pb2_grpc import PullRequestServiceStub
from crawler_service.github.client import GitHubClient
from crawler_service.github.errors import GitHubForeignLink
from tests.support.cluster import TERMINAL, Cluster, cluster
from tests.support.evil_github import Recorder, evil_github

TOKEN = "ghp_evil-test-token-0123456789"


@pytest.fixture
async def crawled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Cluster, Recorder]]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    with evil_github() as (api, elsewhere):
        async with cluster(tmp_path) as c:
            # REST: the attack is a pagination Link (GraphQL has none).
            await c.add_crawler(
                "crawler-1", github_api_url=api, github_token=TOKEN, plugins="", github_api="rest"
            )
            yield c, elsewhere


def _escaped(tmp_path: Path) -> list[Path]:
    exports = tmp_path / "exports"
    return [p for p in tmp_path.rglob("escaped*") if not p.is_relative_to(exports)]


async def _crawl(c: Cluster, **job: object) -> runs_pb2.Run:
    request = spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(**job))  # type: ignore[arg-type]
    run = (await c.stub.TriggerRun(request)).run
    return await c.wait_for_state(run.id, *TERMINAL)


async def test_a_link_to_another_host_is_not_followed(crawled: tuple[Cluster, Recorder]) -> None:
    c, elsewhere = crawled
    done = await _crawl(c, repositories=["evil/linked"])
    assert done.state == runs_pb2.RUN_STATE_FAILED
    assert "outside the configured GitHub API" in done.error.message
    assert elsewhere.requests == []


async def test_names_from_github_never_leave_the_export_directory(
    crawled: tuple[Cluster, Recorder], tmp_path: Path
) -> None:
    c, _elsewhere = crawled
    done = await _crawl(c, organization="evil-org")
    assert _escaped(tmp_path) == []
    # The listing's '../escaped' was dropped; the repository answering with it failed.
    assert done.state == runs_pb2.RUN_STATE_FAILED
    assert "with the name '../escaped'" in done.error.message


async def test_a_client_supplied_dot_dot_is_refused(crawled: tuple[Cluster, Recorder]) -> None:
    c, _elsewhere = crawled
    crawl = runs_pb2.CrawlJob(repositories=["o/.."])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await c.stub.TriggerRun(spb.TriggerRunRequest(crawl=crawl))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with grpc.aio.insecure_channel(c.crawlers[0].address) as channel:
        stub = PullRequestServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as queried:
            await stub.GetRepositoryStats(ppb.GetRepositoryStatsRequest(repository="o/.."))
        assert queried.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_client_refuses_foreign_urls_and_dot_segments() -> None:
    async with GitHubClient("https://ghe.example/api/v3", TOKEN) as github:
        with pytest.raises(GitHubForeignLink):
            await github.get("https://elsewhere.example/api/v3/repos/o/r")
        with pytest.raises(ValueError, match="owner/repo"):
            await github.repository("o/..")


def test_an_export_path_outside_the_directory_is_refused(tmp_path: Path) -> None:
    from crawler_service.errors import PermanentError
    from crawler_service.jobs.steps.export import ExportStep

    step = ExportStep(store=None, export_dir=tmp_path / "exports")  # type: ignore[arg-type]
    assert step._inside("o/r.csv") == (tmp_path / "exports" / "o" / "r.csv").resolve()
    for key in ("../escaped.csv", "o/../../x.csv", "/etc/passwd"):
        with pytest.raises(PermanentError):
            step._inside(key)
