"""The issue's attacks by fake crawlers, now failing for the attacker (SQLite and PostgreSQL):
a crawler's identity comes from its credential, its slots are capped, one that keeps losing
attempts while connected is quarantined, and an oversized crawler id is refused in-band."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from common.auth import tokens
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import worker_service_pb2 as wpb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from tests.support.auth import Tokens, make_tokens
from tests.support.cluster import TERMINAL, Cluster, cluster
from tests.support.impostor import Impostor


@pytest.fixture
async def secured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> AsyncIterator[tuple[Cluster, Tokens]]:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    keys = make_tokens(tmp_path)
    keys.plain["evil"] = tokens.create(keys.path, "evil", ["worker"])
    async with cluster(
        tmp_path,
        db=scheduler_db_url,
        auth_file=str(keys.path),
        lease_ttl=2.0,
        quarantine_losses=2,
        max_crawler_slots=8,
    ) as running:
        await running.channel.close(None)
        running.channel = keys.channel(running.address, "admin")
        running.stub = SchedulerServiceStub(running.channel)
        yield running, keys


def _crawl(repository: str) -> spb.TriggerRunRequest:
    crawl = runs_pb2.CrawlJob(repositories=[repository])
    return spb.TriggerRunRequest(crawl=crawl, max_attempts=10)


async def test_an_unauthenticated_crawler_gets_nothing(secured: tuple[Cluster, Tokens]) -> None:
    c, keys = secured
    # The streams send no hello: the refusal comes from the call's metadata, possibly before a
    # first message could be written, and a write racing it fails INTERNAL on the client side.
    async with keys.channel(c.address, None) as channel:
        impostor = Impostor(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await impostor.receive("welcome")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with keys.channel(c.address, "writer") as channel:
        impostor = Impostor(channel)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await impostor.receive("welcome")
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_crawler_swallowing_the_queue_is_capped_and_quarantined(
    secured: tuple[Cluster, Tokens],
) -> None:
    c, keys = secured
    async with keys.channel(c.address, "evil") as channel:
        impostor = Impostor(channel)
        impostor.hello("greedy", slots=1000)
        await impostor.receive("welcome")
        workers = (await c.stub.ListWorkers(spb.ListWorkersRequest())).workers
        assert [(w.id, w.slots) for w in workers] == [("evil/greedy", 8)]
        runs = [(await c.stub.TriggerRun(_crawl(f"octo/r{i}"))).run for i in range(2)]
        reading = asyncio.create_task(impostor.collect())
        # It never heartbeats: both leases expire while its stream stays open, twice the
        # quarantine threshold's worth of losses at most, then it gets nothing more.
        await c.add_crawler("honest", auth_file=str(keys.path), token=keys.plain["crawlers"])
        finished = [await c.wait_for_state(run.id, *TERMINAL) for run in runs]
        # Only the honest crawler reports anything: success means it ran them.
        assert [run.state for run in finished] == [runs_pb2.RUN_STATE_SUCCEEDED] * 2
        assert c.scheduler.orchestrator.quarantine.holds("evil/greedy")
        taken_after = len(impostor.assignments)
        more = (await c.stub.TriggerRun(_crawl("octo/after"))).run
        done = await c.wait_for_state(more.id, *TERMINAL)
        assert done.state == runs_pb2.RUN_STATE_SUCCEEDED
        assert len(impostor.assignments) == taken_after
        impostor.close()
        reading.cancel()


async def test_a_killed_and_restarted_crawler_is_not_quarantined(
    secured: tuple[Cluster, Tokens],
) -> None:
    c, keys = secured
    token = keys.plain["crawlers"]
    crawler = await c.add_crawler("restarts", auth_file=str(keys.path), token=token)
    run = (await c.stub.TriggerRun(_crawl("test/gated"))).run
    await c.wait_for_step(run.id, "beta")
    # A crash: the process is gone without handing anything back.
    assert crawler.worker is not None
    await crawler.worker._close()
    await c.stop_crawler(crawler)
    again = await c.add_crawler("restarts", auth_file=str(keys.path), token=token)
    c.open_gate(run.id)
    done = await c.wait_for_state(run.id, *TERMINAL)
    assert done.state == runs_pb2.RUN_STATE_SUCCEEDED
    assert not c.scheduler.orchestrator.quarantine.holds("crawlers/restarts")
    assert again.worker is not None


async def test_a_fake_crawler_cannot_hijack_a_run(secured: tuple[Cluster, Tokens]) -> None:
    c, keys = secured
    await c.add_crawler("crawler-1", auth_file=str(keys.path), token=keys.plain["crawlers"])
    run = (await c.stub.TriggerRun(_crawl("test/gated"))).run
    await c.wait_for_step(run.id, "beta")
    current = (await c.stub.GetRun(spb.GetRunRequest(run_id=run.id))).run
    assert current.worker_id == "crawlers/crawler-1"
    ref = wpb.AttemptRef(run_id=run.id, attempt=current.attempt)
    async with keys.channel(c.address, "evil") as channel:
        for claimed_id in ("crawler-1", "crawlers/crawler-1"):
            impostor = Impostor(channel)
            impostor.hello(claimed_id, slots=1, in_flight=[ref])
            welcome = (await impostor.receive("welcome")).welcome
            assert list(welcome.reattached) == []
            assert list(welcome.abandoned) == [ref]
            pwned = struct_pb2.Struct()
            pwned.update({"pwned": True})
            impostor.send(
                wpb.ConnectRequest(
                    result=wpb.AttemptResult(
                        ref=ref, outcome=wpb.ATTEMPT_OUTCOME_SUCCEEDED, output=pwned
                    )
                )
            )
            abandon = (await impostor.receive("abandon")).abandon
            assert abandon.ref == ref
            impostor.close()
    still = (await c.stub.GetRun(spb.GetRunRequest(run_id=run.id))).run
    assert (still.state, still.worker_id) == (runs_pb2.RUN_STATE_RUNNING, "crawlers/crawler-1")
    c.open_gate(run.id)
    done = await c.wait_for_state(run.id, *TERMINAL)
    assert done.state == runs_pb2.RUN_STATE_SUCCEEDED
    assert "pwned" not in done.output


async def test_a_300_character_crawler_id_is_refused_and_triggers_still_work(
    secured: tuple[Cluster, Tokens],
) -> None:
    c, keys = secured
    async with keys.channel(c.address, "evil") as channel:
        for hello_id in ("x" * 300, "nul\x00id"):
            impostor = Impostor(channel)
            impostor.hello(hello_id, slots=1)
            rejected = (await impostor.receive("rejected")).rejected
            assert "worker_id" in rejected.reason
            impostor.close()
        impostor = Impostor(channel)
        impostor.hello("x" * 128, slots=1)
        await impostor.receive("welcome")
        response = await c.stub.TriggerRun(_crawl("octo/ok"))
        assert response.run.id
        impostor.close()


async def test_replicas_sharing_a_token_stay_distinct(secured: tuple[Cluster, Tokens]) -> None:
    c, keys = secured
    for name in ("replica-a", "replica-b"):
        await c.add_crawler(name, auth_file=str(keys.path), token=keys.plain["crawlers"])
    workers = (await c.stub.ListWorkers(spb.ListWorkersRequest())).workers
    assert sorted(w.id for w in workers) == ["crawlers/replica-a", "crawlers/replica-b"]
