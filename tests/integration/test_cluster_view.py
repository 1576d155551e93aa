"""The cluster view: every replica writes its crawlers to the shared workers table, so ListWorkers
on any replica shows every crawler with the replica it is connected to; a dead replica's rows
drop out of the view and are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from crawler_service.app import CrawlerApp
from scheduler_service.app import SchedulerApp
from scheduler_service.cluster.registry import SqlWorkerRegistry, WorkerEntry
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from tests.support.cluster import cluster, crawler_settings, scheduler_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(worker_id: str, replica_id: str, at: datetime, **fields: object) -> WorkerEntry:
    values: dict[str, object] = {
        "worker_id": worker_id,
        "replica_id": replica_id,
        "replica_address": f"{replica_id}:50051",
        "slots": 2,
        "free_slots": 2,
        "run_ids": (),
        "draining": False,
        "version": "1.0",
        "protocol_version": 1,
        "connected_at": at,
        "heartbeat_at": at,
        **fields,
    }
    return WorkerEntry(**values)  # type: ignore[arg-type]


async def test_the_registry_follows_crawlers_between_replicas(scheduler_db_url: str) -> None:
    store = SqlRunStore.open(scheduler_db_url, RetryPolicy(timedelta(0), timedelta(0)))
    registry = SqlWorkerRegistry(*store.async_engines())
    try:
        await registry.connected(entry("w1", "a", T0))
        await registry.connected(entry("w2", "a", T0, run_ids=("run_1",), free_slots=1))
        # w1 moved to b before a noticed its stream was gone.
        await registry.connected(entry("w1", "b", T0 + timedelta(seconds=1)))
        await registry.disconnected("w1", "a")
        await registry.refresh([entry("w1", "a", T0 + timedelta(seconds=2))])
        live = await registry.live(T0)
        assert [(e.worker_id, e.replica_id, e.run_ids) for e in live] == [
            ("w1", "b", ()),
            ("w2", "a", ("run_1",)),
        ]
        # a refreshes w2 only; b died after its last refresh.
        later = T0 + timedelta(seconds=30)
        await registry.refresh([entry("w2", "a", later, free_slots=2, run_ids=())])
        assert [e.worker_id for e in await registry.live(later)] == ["w2"]
        assert (await registry.live(later))[0].free_slots == 2
        assert await registry.purge(later) == 1
        assert [e.worker_id for e in await registry.live(T0)] == ["w2"]
        # A refresh that also purges (one transaction per interval): w3, last written at T0, goes.
        await registry.connected(entry("w3", "b", T0))
        renewed = entry("w2", "a", later + timedelta(seconds=10), free_slots=1)
        assert await registry.refresh([renewed], purge_before=later) == 1
        assert [(e.worker_id, e.free_slots) for e in await registry.live(T0)] == [("w2", 1)]
        await registry.disconnected("w2", "a")
        assert await registry.live(T0) == []
    finally:
        await store.close()


async def test_list_workers_on_any_replica_shows_every_crawler(
    tmp_path: Path, scheduler_db_url: str
) -> None:
    async with cluster(tmp_path, db=scheduler_db_url, scheduler_id="replica-b") as b:
        await b.add_crawler("crawler-on-b")
        settings = scheduler_settings(
            tmp_path, db=scheduler_db_url, migrate=False, scheduler_id="replica-a"
        )
        a = SchedulerApp(settings)
        await a.start()
        crawler = CrawlerApp(crawler_settings(tmp_path, a.address, "crawler-on-a"))
        try:
            await crawler.start()
            assert crawler.worker is not None
            await crawler.worker.connected.wait()
            async with grpc.aio.insecure_channel(a.address) as channel:
                via_a = await SchedulerServiceStub(channel).ListWorkers(spb.ListWorkersRequest())
            via_b = await b.stub.ListWorkers(spb.ListWorkersRequest())
        finally:
            await crawler.stop()
            await a.stop()
        after = await b.stub.ListWorkers(spb.ListWorkersRequest())
    expected = [
        ("crawler-on-a", "replica-a", a.address, 1),
        ("crawler-on-b", "replica-b", b.address, 1),
    ]
    for answer in (via_a, via_b):
        seen = [(w.id, w.replica_id, w.replica_address, w.protocol_version) for w in answer.workers]
        assert seen == expected
    # crawler-on-a disconnected: replica a deleted its row.
    assert [w.id for w in after.workers] == ["crawler-on-b"]
