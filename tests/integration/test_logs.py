"""Logs of a real crawl (scheduler + crawler in process, fake GitHub): the run context on every
line inside a run, and the GitHub token on none, with both renderers."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common import logging as ghlog
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.cluster import TERMINAL, cluster
from tests.support.github import TOKEN, serve

#: legacy is archived: its fetch fails (permanently, for it alone) and the run still succeeds.
#: The crawl of both fans out: a parent run, and one child run per repository.
INFRA, LEGACY = "ghpulse-demo/infra", "ghpulse-demo/legacy"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with serve() as running:
        yield running


async def _crawl(tmp: Path, fake: FakeGitHub, fmt: str) -> tuple[str, str, dict[str, str]]:
    """Crawl two sample repositories through a few 502s; the logs, the (parent) run id and each
    repository's child run id."""
    # The token travels in the Authorization header only; it must reach no log line (credentials
    # in the API URL are refused at start-up: see test_crawler_settings_refuse_url_credentials).
    api_url = fake.url
    fake.faults.fail_next(rf"^/repos/{INFRA}/pulls$", 502, count=2)
    stream = io.StringIO()
    ghlog.configure("info", fmt, stream=stream, cache=False)
    try:
        async with cluster(tmp) as c:
            await c.add_crawler(
                github_api_url=api_url, github_token=TOKEN, github_retry_backoff=0.0, plugins=""
            )
            response = await c.trigger(INFRA, LEGACY)
            run = await c.wait_for_state(response.run.id, *TERMINAL)
            listed = await c.stub.ListRuns(spb.ListRunsRequest(parent_run_id=run.id))
    finally:
        ghlog.reset()
    assert run.state == runs_pb2.RUN_STATE_SUCCEEDED
    children = {child.crawl.repositories[0]: child.id for child in listed.runs}
    assert set(children) == {INFRA, LEGACY}
    return stream.getvalue(), response.run.id, children


async def test_json_lines_inside_a_run_carry_its_context(tmp_path: Path, fake: FakeGitHub) -> None:
    text, parent_id, children = await _crawl(tmp_path, fake, "json")

    assert TOKEN not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert "run.triggered" in {line["event"] for line in lines if line.get("run_id") == parent_id}
    infra_id = children[INFRA]
    in_run = [line for line in lines if line.get("run_id") == infra_id]
    assert {"run.dispatched", "attempt.started", "attempt.finished"} <= {
        line["event"] for line in in_run
    }
    assert all("attempt" in line for line in in_run)
    retries = [line for line in lines if line["event"] == "github.retry"]
    assert len(retries) == 2
    for line in retries:
        assert _context(line) == (infra_id, 1, "fetch", INFRA)
        assert line["url"].startswith(f"{fake.url}/repos/{INFRA}/pulls")
    (done,) = [line for line in lines if line["event"] == "fetch.repository_done"]
    (failed,) = [line for line in lines if line["event"] == "fetch.repository_failed"]
    assert _context(done) == (infra_id, 1, "fetch", INFRA)
    assert _context(failed) == (children[LEGACY], 1, "fetch", LEGACY)
    # Outside the fetch step's repositories, no repository is bound.
    finished = [line for line in in_run if line["event"] == "attempt.finished"]
    assert all("repository" not in line for line in finished)


async def test_console_lines_carry_the_context_and_not_the_token(
    tmp_path: Path, fake: FakeGitHub
) -> None:
    text, _parent_id, children = await _crawl(tmp_path, fake, "console")
    run_id = children[INFRA]

    assert TOKEN not in text
    retries = [line for line in text.splitlines() if "github.retry" in line]
    assert len(retries) == 2
    for line in retries:
        for part in (f"run_id={run_id}", "attempt=1", "step=fetch", f"repository={INFRA}"):
            assert part in line


def _context(line: dict[str, Any]) -> tuple[Any, ...]:
    return line.get("run_id"), line.get("attempt"), line.get("step"), line.get("repository")
