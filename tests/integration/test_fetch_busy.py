"""A crawl whose repository another run is fetching is handed back to the scheduler instead of
waiting in a crawler slot: pending again after GHPULSE_FETCH_BUSY_RETRY, without using up an
attempt, while the slot serves other runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from ghpulse.testing.fake_github import FakeGitHub
from tests.support.cluster import TERMINAL, Cluster, cluster
from tests.support.github import serve

API, WEB = "ghpulse-demo/api", "ghpulse-demo/web"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with serve() as running:
        yield running


@pytest.fixture
async def c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path) as running:
        yield running


async def handed_back(c: Cluster, run_id: str) -> spb.WatchRunResponse:
    """The first event saying the run was handed back (bounded by the test timeout)."""
    async for message in c.stub.WatchRun(spb.WatchRunRequest(run_id=run_id)):
        if message.HasField("event") and message.event.HasField("state_changed"):
            changed = message.event.state_changed
            if changed.state == runs_pb2.RUN_STATE_PENDING and "handed back" in changed.reason:
                return message
    raise AssertionError(f"run {run_id} ended without being handed back")


async def test_a_busy_repository_hands_the_run_back_and_frees_the_slot(
    c: Cluster, fake: FakeGitHub
) -> None:
    crawler = await c.add_crawler(
        "one-slot", plugins="", github_api_url=fake.url, slots=1, fetch_busy_retry=2.0
    )
    assert crawler.store is not None
    # Another run (of another replica, say) is sweeping API.
    assert await crawler.store.try_lock(API, "run-elsewhere", timedelta(minutes=5))

    busy = await c.trigger(API, max_attempts=1)
    event = await handed_back(c, busy.run.id)
    assert "another run is fetching ghpulse-demo/api" in event.event.state_changed.reason

    # The only slot is free meanwhile: another crawl runs to its end.
    other = await c.trigger(WEB)
    done = await c.wait_for_state(other.run.id, *TERMINAL)
    assert done.state == runs_pb2.RUN_STATE_SUCCEEDED, done.error
    waiting = (await c.stub.GetRun(spb.GetRunRequest(run_id=busy.run.id))).run
    assert waiting.state in (runs_pb2.RUN_STATE_PENDING, runs_pb2.RUN_STATE_RUNNING)

    await crawler.store.unlock(API, "run-elsewhere")
    run = await c.wait_for_state(busy.run.id, *TERMINAL)
    # max_attempts=1: had a hand-back used up an attempt, the run would have failed.
    assert run.state == runs_pb2.RUN_STATE_SUCCEEDED, run.error
    assert run.attempt >= 2
    assert dict(run.output)["repositories_fetched"] == [API]
