"""A `PullRequestService` replica on a real port, and a fake `SchedulerService` that records the
TriggerRun calls (the backfills) the replica makes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from common.db import create_async
from common.grpc_server import ServerHost
from common.proto.ghpulse.v1 import pull_request_service_pb2_grpc as pb_grpc
from common.proto.ghpulse.v1 import runs_pb2, scheduler_service_pb2, scheduler_service_pb2_grpc
from crawler_service.api.backfill import BackfillStarter
from crawler_service.api.pull_requests import SERVICE_NAME, PullRequestServicer, add_to_server
from crawler_service.data.queries import Queries

SCHEDULER_SERVICE = scheduler_service_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name


class FakeSchedulerService(scheduler_service_pb2_grpc.SchedulerServiceServicer):
    """Records TriggerRun calls and, like the real scheduler, joins by concurrency key."""

    def __init__(self) -> None:
        self.calls: list[scheduler_service_pb2.TriggerRunRequest] = []
        self.runs: dict[str, str] = {}
        self.changed = asyncio.Condition()
        #: Answers wait for this (cleared: held back; never set: the scheduler hangs).
        self.release = asyncio.Event()
        self.release.set()

    async def TriggerRun(self, request: Any, context: Any) -> Any:
        self.calls.append(request)
        async with self.changed:
            self.changed.notify_all()
        await self.release.wait()
        created = request.concurrency_key not in self.runs
        run_id = self.runs.setdefault(request.concurrency_key, f"run-{len(self.runs) + 1}")
        return scheduler_service_pb2.TriggerRunResponse(
            run=runs_pb2.Run(id=run_id, concurrency_key=request.concurrency_key),
            disposition=scheduler_service_pb2.DISPOSITION_CREATED
            if created
            else scheduler_service_pb2.DISPOSITION_JOINED,
        )

    async def wait_for_calls(self, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: len(self.calls) >= count)


@asynccontextmanager
async def crawler(
    db_url: str, scheduler_addr: str, backfill_timeout: float = 5.0
) -> AsyncIterator[pb_grpc.PullRequestServiceAsyncStub]:
    """One crawler replica serving PullRequestService; yields a client stub."""
    engine = create_async(db_url)
    starter = BackfillStarter(scheduler_addr, timeout=backfill_timeout)
    servicer = PullRequestServicer(Queries(engine), starter)
    try:
        async with (
            ServerHost("127.0.0.1:0", [SERVICE_NAME], lambda s: add_to_server(servicer, s),
                       grace=0.1) as host,
            grpc.aio.insecure_channel(host.address) as channel,
        ):  # fmt: skip
            yield pb_grpc.PullRequestServiceStub(channel)
    finally:
        await starter.aclose()
        await engine.dispose()
