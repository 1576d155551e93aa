"""Several scheduler processes on one database: the constraints keep them correct, and runs written
by one are dispatched and watched through another (picked up by the periodic sweep)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from scheduler_service.app import SchedulerApp
from scheduler_service.runs.model import EventKind
from tests.support.cluster import TERMINAL, cluster, scheduler_settings


async def test_a_run_triggered_on_one_scheduler_runs_via_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> None:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    async with cluster(tmp_path, db=scheduler_db_url) as b:
        await b.add_crawler("crawler-on-b")
        a = SchedulerApp(scheduler_settings(tmp_path, db=scheduler_db_url, migrate=False))
        await a.start()
        try:
            async with grpc.aio.insecure_channel(a.address) as channel:
                stub_a = SchedulerServiceStub(channel)
                gated = runs_pb2.CrawlJob(repositories=["test/gated"])
                request = spb.TriggerRunRequest(crawl=gated)
                answers = await asyncio.gather(
                    stub_a.TriggerRun(request), b.stub.TriggerRun(request)
                )
                assert answers[0].run.id == answers[1].run.id  # one active run per key
                run_id = answers[0].run.id
                b.open_gate(run_id)
                # A has no crawler: B dispatches the run; A's watcher follows it anyway.
                seen = [m async for m in stub_a.WatchRun(spb.WatchRunRequest(run_id=run_id))]
            stored = await b.scheduler.orchestrator.store.events_after(run_id, 0)
        finally:
            await a.stop()
    final = seen[-1].event.state_changed
    assert final.state in TERMINAL
    assert final.state == runs_pb2.RUN_STATE_SUCCEEDED
    # Every event after the snapshot, in order; the only gaps allowed are progress events that a
    # newer progress event of the same step replaced before delivery (README, "Watching").
    seqs = [m.event.seq for m in seen[1:]]
    expected = [e for e in stored if e.seq > seen[0].snapshot.last_seq]
    assert seqs == sorted(set(seqs)) and seqs[-1] == expected[-1].seq
    skipped = [e for e in expected if e.seq not in set(seqs)]
    assert all(e.kind is EventKind.STEP_PROGRESS for e in skipped), skipped
