"""The typed client against an in-process scheduler and crawler (test jobs, real ports)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from common.client.aio import GhpulseClient
from common.client.sync import SyncGhpulseClient
from common.client.watch import Backoff, RunView
from common.jobs import CrawlSpec
from common.proto.ghpulse.v1 import runs_pb2
from crawler_service.app import CrawlerApp
from scheduler_service.app import SchedulerApp
from tests.support.cluster import Cluster, cluster, crawler_settings, scheduler_settings


@pytest.fixture
async def c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[Cluster]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path, db=scheduler_db_url) as running:
        await running.add_crawler()
        yield running


@pytest.fixture
async def client(c: Cluster) -> AsyncIterator[GhpulseClient]:
    crawler = c.crawlers[0].address
    async with GhpulseClient(c.address, crawler, watch_backoff=Backoff(0.05, 0.2, 30)) as client:
        yield client


async def test_trigger_sets_a_request_id_so_a_repeat_is_idempotent(client: GhpulseClient) -> None:
    first = await client.trigger(CrawlSpec(("octo/a",)), labels={"team": "x"})
    again = await client.trigger(
        CrawlSpec(("octo/a",)), labels={"team": "x"}, request_id=first.request_id
    )

    assert first.disposition == "created"
    assert len(first.request_id) == 36
    assert (again.run_id, again.disposition) == (first.run_id, "idempotent")
    assert dict(first.run.labels) == {"team": "x"}


async def test_watch_follows_the_run_to_its_end(client: GhpulseClient) -> None:
    triggered = await client.trigger(CrawlSpec(("octo/a",)))
    view = RunView(triggered.run_id)
    messages = [message async for message in client.watch(triggered.run_id)]
    for message in messages:
        view.apply(message)

    assert messages[0].HasField("snapshot")
    assert view.state == runs_pb2.RUN_STATE_SUCCEEDED
    assert list(view.steps) == ["alpha", "beta", "gamma"]
    assert {s.state for s in view.steps.values()} == {runs_pb2.STEP_STATE_SUCCEEDED}
    assert {s.current for s in view.steps.values()} == {2}


async def test_watch_resumes_after_the_scheduler_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its own scheduler (not the cluster's), because this test replaces it mid-run.
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    (tmp_path / "gates").mkdir()
    first = SchedulerApp(scheduler_settings(tmp_path))
    await first.start()
    address, second = first.address, None
    crawler = CrawlerApp(crawler_settings(tmp_path, first.address, "crawler-1"))
    await crawler.start()
    client = GhpulseClient(address, watch_backoff=Backoff(0.05, 0.2, 30))
    try:
        triggered = await client.trigger(CrawlSpec(("test/gated",)))
        stream = client.watch(triggered.run_id)
        view = RunView(triggered.run_id)
        while "beta" not in view.steps:
            view.apply(await anext(stream))

        await first.stop()
        second = SchedulerApp(scheduler_settings(tmp_path, listen=address))
        await second.start()
        (tmp_path / "gates" / triggered.run_id).touch()
        seen = []
        async for message in stream:
            view.apply(message)
            if message.HasField("event"):
                seen.append(message.event.seq)

        assert view.state == runs_pb2.RUN_STATE_SUCCEEDED
        assert seen == sorted(set(seen)), "no event is delivered twice"
        assert (await client.get_run(triggered.run_id)).last_seq == seen[-1]
    finally:
        await client.aclose()
        await crawler.stop()
        await (second or first).stop()


async def test_cancel_list_and_workers(c: Cluster, client: GhpulseClient) -> None:
    triggered = await client.trigger(CrawlSpec(("test/gated",)), labels={"who": "me"})
    await c.wait_for_step(triggered.run_id, "beta")
    await client.cancel(triggered.run_id, "changed my mind")
    final = await client.wait(triggered.run_id)
    listed = await client.list_runs(states=[runs_pb2.RUN_STATE_CANCELLED], labels={"who": "me"})
    workers = await client.workers()

    assert final.state == runs_pb2.RUN_STATE_CANCELLED
    assert [run.id for run in listed.runs] == [triggered.run_id]
    assert [worker.id for worker in workers.workers] == ["crawler-1"]


async def test_errors_are_rpc_errors_with_their_status(client: GhpulseClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_run("no-such-run")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [message async for message in client.watch("no-such-run")]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_sync_client_triggers_and_watches(c: Cluster) -> None:
    def use_it() -> tuple[int, int]:
        with SyncGhpulseClient(c.address) as sync:
            triggered = sync.trigger(CrawlSpec(("octo/sync",)))
            messages = list(sync.watch(triggered.run_id))
            return len(messages), sync.get_run(triggered.run_id).state

    count, state = await asyncio.to_thread(use_it)

    assert count > 1
    assert state == runs_pb2.RUN_STATE_SUCCEEDED
