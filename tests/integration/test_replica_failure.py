"""A scheduler replica goes away mid-run: clients and crawlers that reach the scheduler through an
`ipv4:A,B` target carry on through the other replica. The watch resumes after the last event it
delivered (no gap, no duplicate) and the crawler re-attaches its running attempt (no attempt used
up). Replica B is started only after the watch and the crawler's stream are on A, so which replica
they use is known, not left to the round-robin's first pick."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.auth.credentials import ClientCredentials
from common.client.aio import GhpulseClient
from common.client.watch import Backoff
from common.jobs import CrawlSpec
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from crawler_service.app import CrawlerApp
from scheduler_service.app import SchedulerApp
from tests.support.cluster import cluster, crawler_settings, scheduler_settings
from tests.support.following import follow
from tests.support.processes import free_port

#: Leases and the reconnect grace long enough that a loaded machine never expires one while the
#: crawler moves between replicas (the test waits for events, never for these).
SLOW_LEASES = {"lease_ttl": 20.0, "reconnect_grace": 10.0}


async def test_watch_and_crawler_move_to_the_other_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_db_url: str
) -> None:
    monkeypatch.setenv("GHPULSE_TEST_GATES", str(tmp_path / "gates"))
    (tmp_path / "gates").mkdir()
    b_port = free_port()
    a = SchedulerApp(
        scheduler_settings(tmp_path, db=scheduler_db_url, scheduler_id="replica-a", **SLOW_LEASES)
    )
    await a.start()
    b = SchedulerApp(
        scheduler_settings(
            tmp_path,
            listen=f"127.0.0.1:{b_port}",
            db=scheduler_db_url,
            migrate=False,
            scheduler_id="replica-b",
            **SLOW_LEASES,
        )
    )
    target = f"ipv4:{a.address},127.0.0.1:{b_port}"
    crawler = CrawlerApp(crawler_settings(tmp_path, target, "crawler-1"))
    client = GhpulseClient(target, credentials=ClientCredentials(), watch_backoff=Backoff(0.05))
    try:
        await crawler.start()
        assert crawler.worker is not None
        await crawler.worker.connected.wait()
        triggered = await client.trigger(CrawlSpec(("test/gated",)), max_attempts=1)
        run_id = triggered.run_id
        seen: list[spb.WatchRunResponse] = []
        beta = asyncio.Event()
        watching = asyncio.create_task(follow(client, run_id, seen, beta))
        await beta.wait()
        await b.start()
        await a.stop()
        (tmp_path / "gates" / run_id).touch()
        await watching
        final = await client.get_run(run_id)
        workers = await client.workers()
    finally:
        await client.aclose()
        await crawler.stop()
        await a.stop()
        await b.stop()
    # The crawler's attempt went on under replica b: the one attempt allowed was enough.
    assert (final.state, final.attempt) == (runs_pb2.RUN_STATE_SUCCEEDED, 1)
    assert [(w.id, w.replica_id) for w in workers.workers] == [("crawler-1", "replica-b")]
    # The watch saw a snapshot per connection and every event once, in order.
    snapshots = [m for m in seen if m.HasField("snapshot")]
    assert len(snapshots) == 2
    seqs = [m.event.seq for m in seen if m.HasField("event")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert snapshots[1].snapshot.last_seq >= snapshots[0].snapshot.last_seq
    assert seen[-1].event.state_changed.state == runs_pb2.RUN_STATE_SUCCEEDED


async def test_clients_and_crawlers_take_dns_targets(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        port = c.address.rsplit(":", 1)[1]
        # `localhost` may also resolve to ::1, where nothing listens: round-robin skips it.
        target = f"dns:///localhost:{port}"
        crawler = CrawlerApp(crawler_settings(tmp_path, target, "crawler-dns"))
        try:
            await crawler.start()
            assert crawler.worker is not None
            await crawler.worker.connected.wait()
            async with GhpulseClient(target, credentials=ClientCredentials()) as client:
                workers = await client.workers()
        finally:
            await crawler.stop()
    assert [w.id for w in workers.workers] == ["crawler-dns"]
