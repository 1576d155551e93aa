"""The crawler's reports when the stream fails them, against a scripted scheduler over a real gRPC
stream: a report whose write fails is sent first on the next stream, and reports still unsent
when a stopping crawler's flush times out are counted in a warning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from common.jobs import JobKind
from common.proto.ghpulse.v1 import worker_service_pb2 as pb
from crawler_service.jobs.registry import Job, JobRegistry, StepContext
from crawler_service.settings import CrawlerSettings
from crawler_service.worker.connection import Worker
from tests.support.fake_scheduler import FakeScheduler

pytestmark = pytest.mark.timeout(60)


@dataclass
class Gated:
    """A step that waits for `gate`, or for the crawler to stop it."""

    name: str = "fetch"
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, ctx: StepContext) -> dict[str, Any]:
        self.entered.set()
        stopped = asyncio.ensure_future(ctx._stop.wait())
        opened = asyncio.ensure_future(self.gate.wait())
        try:
            await asyncio.wait([stopped, opened], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            opened.cancel()
        return {"done": True}


def worker_for(scheduler: FakeScheduler, step: Gated, **overrides: Any) -> Worker:
    registry = JobRegistry()
    registry.register(Job(JobKind.CRAWL, [step]))
    values: dict[str, Any] = {
        "scheduler_addr": scheduler.address,
        "worker_id": "crawler-test",
        "slots": 1,
        "reconnect_backoff": 0.01,
        "reconnect_backoff_max": 0.05,
        "shutdown_grace": 5.0,
        **overrides,
    }
    return Worker(CrawlerSettings(**values), registry)


@pytest.fixture
async def scheduler() -> AsyncIterator[FakeScheduler]:
    fake = FakeScheduler()
    await fake.start()
    yield fake
    fake.welcome_gate.set()
    await fake.stop()


def is_result(request: pb.ConnectRequest) -> bool:
    return request.WhichOneof("message") == "result"


async def test_a_report_whose_write_fails_is_sent_on_the_next_stream(
    scheduler: FakeScheduler,
) -> None:
    step = Gated()
    async with worker_for(scheduler, step) as worker:
        await asyncio.wait_for(worker.connected.wait(), 10)
        scheduler.assign("run-1")
        await asyncio.wait_for(step.entered.wait(), 10)
        write, failed = worker._write, list[pb.ConnectRequest]()

        async def the_result_write_fails_once(call: Any, message: pb.ConnectRequest) -> None:
            if message.HasField("result") and not failed:
                failed.append(message)
                raise asyncio.InvalidStateError("the stream ended mid-write")
            await write(call, message)

        worker._write = the_result_write_fails_once  # type: ignore[method-assign]
        step.gate.set()
        result = await scheduler.wait_for_result("run-1")
    assert result.outcome == pb.ATTEMPT_OUTCOME_SUCCEEDED and len(failed) == 1
    assert scheduler.log_of("run-1").count("result") == 1
    # Sent on a new stream, which re-attached the attempt the result is about.
    hellos = scheduler.hellos()
    assert len(hellos) >= 2
    assert [(r.run_id, r.attempt) for r in hellos[-1].in_flight] == [("run-1", 1)]
    kinds = [r.WhichOneof("message") for r in scheduler.received]
    second_hello = [i for i, kind in enumerate(kinds) if kind == "hello"][1]
    assert kinds.index("result") > second_hello


async def test_reports_unsent_when_the_flush_times_out_are_counted(
    scheduler: FakeScheduler,
) -> None:
    step = Gated()
    worker = worker_for(scheduler, step, shutdown_grace=0.05)
    await worker.start()
    await asyncio.wait_for(worker.connected.wait(), 10)
    scheduler.assign("run-2")
    await asyncio.wait_for(step.entered.wait(), 10)
    # The scheduler goes away and, back, never welcomes the crawler: nothing can be sent.
    scheduler.welcome_gate.clear()
    scheduler.drop()
    await scheduler.wait_for(lambda r: r.WhichOneof("message") == "hello", count=2)

    with capture_logs() as logs:
        await worker.stop()

    [lost] = [entry for entry in logs if entry["event"] == "worker.reports_lost"]
    assert lost["log_level"] == "warning" and lost["count"] >= 1
    assert not any(is_result(r) for r in scheduler.received)
