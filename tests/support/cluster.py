"""In-process scheduler and crawlers on real ports, with the test jobs and fast timings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc

from common.clock import Clock
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from crawler_service.app import CrawlerApp
from crawler_service.settings import CrawlerSettings
from scheduler_service.app import SchedulerApp
from scheduler_service.settings import SchedulerSettings

FAST_SCHEDULER = {
    "lease_ttl": 3.0,
    "heartbeat_interval": 0.2,
    "reconnect_grace": 0.5,
    "cancel_grace": 2.0,
    "retry_backoff": 0.05,
    "retry_backoff_max": 0.2,
    "sweep_interval": 0.1,
    "shutdown_grace": 0.5,
}
FAST_CRAWLER = {
    "reconnect_backoff": 0.02,
    "reconnect_backoff_max": 0.2,
    "shutdown_grace": 2.0,
    "plugins": "tests.support.jobs:register",
    "github_api_url": "http://127.0.0.1:9",
}
TERMINAL = {runs_pb2.RUN_STATE_SUCCEEDED, runs_pb2.RUN_STATE_FAILED, runs_pb2.RUN_STATE_CANCELLED}


def scheduler_settings(tmp: Path, **overrides: Any) -> SchedulerSettings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "db": f"sqlite:///{tmp}/scheduler.db",
        **FAST_SCHEDULER,
    }
    values.update(overrides)
    return SchedulerSettings(**values)


def crawler_settings(
    tmp: Path, scheduler_addr: str, name: str, **overrides: Any
) -> CrawlerSettings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "db": f"sqlite:///{tmp}/crawler.db",
        "worker_id": name,
        "scheduler_addr": scheduler_addr,
        "export_dir": str(tmp / "exports"),
        "slots": 2,
        **FAST_CRAWLER,
    }
    values.update(overrides)
    return CrawlerSettings(**values)


class Cluster:
    """A scheduler, its crawlers and a client stub, all in this process."""

    def __init__(self, tmp: Path, scheduler: SchedulerApp, channel: grpc.aio.Channel) -> None:
        self.tmp = tmp
        self.scheduler = scheduler
        self.channel = channel
        self.stub = SchedulerServiceStub(channel)
        self.crawlers: list[CrawlerApp] = []

    @property
    def address(self) -> str:
        return self.scheduler.address

    async def add_crawler(self, name: str = "crawler-1", **overrides: Any) -> CrawlerApp:
        crawler = CrawlerApp(crawler_settings(self.tmp, self.address, name, **overrides))
        await crawler.start()
        self.crawlers.append(crawler)
        assert crawler.worker is not None
        await asyncio.wait_for(crawler.worker.connected.wait(), 10)
        return crawler

    async def stop_crawler(self, crawler: CrawlerApp) -> None:
        self.crawlers.remove(crawler)
        await crawler.stop()

    async def trigger(self, *repositories: str, **fields: Any) -> spb.TriggerRunResponse:
        request = spb.TriggerRunRequest(
            crawl=runs_pb2.CrawlJob(repositories=list(repositories)), **fields
        )
        return await self.stub.TriggerRun(request)

    async def watch(self, run_id: str, after_seq: int = 0) -> list[spb.WatchRunResponse]:
        """Every message of a WatchRun stream until it closes."""
        call = self.stub.WatchRun(spb.WatchRunRequest(run_id=run_id, after_seq=after_seq))
        return [message async for message in call]

    async def wait_for_state(self, run_id: str, *states: int) -> runs_pb2.Run:
        """Follow the run from now on until it reaches one of `states` (bounded by the test
        timeout)."""
        current = (await self.stub.GetRun(spb.GetRunRequest(run_id=run_id))).run
        request = spb.WatchRunRequest(run_id=run_id, after_seq=current.last_seq)
        async for message in self.stub.WatchRun(request):
            run_state = _state_of(message)
            if run_state in states:
                return (await self.stub.GetRun(spb.GetRunRequest(run_id=run_id))).run
        return (await self.stub.GetRun(spb.GetRunRequest(run_id=run_id))).run

    async def wait_for_step(self, run_id: str, step: str) -> None:
        current = (await self.stub.GetRun(spb.GetRunRequest(run_id=run_id))).run
        request = spb.WatchRunRequest(run_id=run_id, after_seq=current.last_seq)
        async for message in self.stub.WatchRun(request):
            if message.HasField("snapshot"):
                if any(
                    s.name == step and s.state == runs_pb2.STEP_STATE_RUNNING
                    for s in message.snapshot.steps
                ):
                    return
            elif message.event.HasField("step_started") and message.event.step_started.step == step:
                return
        raise AssertionError(f"run {run_id} ended before step {step} started")

    def open_gate(self, run_id: str) -> None:
        (self.tmp / "gates" / run_id).touch()


def _state_of(message: spb.WatchRunResponse) -> int | None:
    if message.HasField("snapshot"):
        return message.snapshot.state
    if message.event.HasField("state_changed"):
        return message.event.state_changed.state
    return None


def cluster(tmp: Path, **scheduler_overrides: Any) -> AbstractAsyncContextManager[Cluster]:
    """Set GHPULSE_TEST_GATES to `tmp / "gates"` first (monkeypatch), for gated test jobs."""
    return clocked_cluster(tmp, None, **scheduler_overrides)


@asynccontextmanager
async def clocked_cluster(
    tmp: Path, clock: Clock | None, **scheduler_overrides: Any
) -> AsyncIterator[Cluster]:
    """`cluster`, its scheduler on `clock` (None: the system's)."""
    (tmp / "gates").mkdir(exist_ok=True)
    scheduler = SchedulerApp(scheduler_settings(tmp, **scheduler_overrides), clock)
    await scheduler.start()
    channel = grpc.aio.insecure_channel(scheduler.address)
    running = Cluster(tmp, scheduler, channel)
    try:
        yield running
    finally:
        for crawler in list(running.crawlers):
            await crawler.stop()
        await channel.close(None)
        await scheduler.stop()
