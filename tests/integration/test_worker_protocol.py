"""The crawler's Worker against a scripted scheduler over a real gRPC stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from common.jobs import BackfillLinksSpec, JobKind, RecalculateSpec
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import worker_service_pb2 as pb
from crawler_service.errors import TransientError
from crawler_service.jobs.registry import Job, JobRegistry, StepContext
from crawler_service.settings import CrawlerSettings
from crawler_service.worker.connection import Worker
from tests.support.fake_scheduler import FakeScheduler, describe

pytestmark = pytest.mark.timeout(30)


@dataclass
class GateStep:
    """Reports progress, then waits for `gate` (or a stop request) before finishing."""

    name: str
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    returned: asyncio.Event = field(default_factory=asyncio.Event)
    heed_stop: bool = True
    runs: int = 0

    async def run(self, ctx: StepContext) -> dict[str, Any]:
        self.runs += 1
        await ctx.progress(1, 3, "first")
        await ctx.progress(2, 3, "second")
        self.entered.set()
        try:
            await self._wait(ctx)
        except asyncio.CancelledError:
            self.killed.set()
            raise
        await ctx.progress(3, 3, "third")
        self.returned.set()
        return {self.name: 3, "seen": sorted(ctx.outputs)}

    async def _wait(self, ctx: StepContext) -> None:
        waits = [asyncio.ensure_future(self.gate.wait())]
        if self.heed_stop:
            waits.append(asyncio.ensure_future(ctx._stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


@dataclass
class FailStep:
    name: str
    error: Exception

    async def run(self, ctx: StepContext) -> dict[str, Any]:
        raise self.error


@dataclass
class Harness:
    scheduler: FakeScheduler
    worker: Worker
    fetch: GateStep
    count: GateStep
    registry: JobRegistry

    def open_gates(self) -> None:
        self.fetch.gate.set()
        self.count.gate.set()


def _settings(address: str, **overrides: Any) -> CrawlerSettings:
    values: dict[str, Any] = {
        "scheduler_addr": address,
        "worker_id": "crawler-test",
        "slots": 2,
        "reconnect_backoff": 0.01,
        "reconnect_backoff_max": 0.02,
        "shutdown_grace": 5.0,
    }
    values.update(overrides)
    return CrawlerSettings(**values)


@pytest.fixture
async def scheduler() -> AsyncIterator[FakeScheduler]:
    fake = FakeScheduler()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def harness(scheduler: FakeScheduler) -> AsyncIterator[Harness]:
    fetch, count = GateStep("fetch"), GateStep("count")
    registry = JobRegistry()
    registry.register(Job(JobKind.CRAWL, [fetch, count]))
    worker = Worker(_settings(scheduler.address), registry)
    await worker.start()
    yield Harness(scheduler, worker, fetch, count, registry)
    fetch.gate.set()
    count.gate.set()
    await worker.stop()


def _kind(name: str):
    return lambda request: request.WhichOneof("message") == name


async def test_hello_and_welcome(harness: Harness) -> None:
    await asyncio.wait_for(harness.worker.connected.wait(), 10)

    [hello] = harness.scheduler.hellos()
    assert (hello.worker_id, hello.protocol_version, hello.slots) == ("crawler-test", 1, 2)
    assert list(hello.in_flight) == []
    assert hello.version


async def test_rejected_then_retries(scheduler: FakeScheduler) -> None:
    scheduler.reject_next = "protocol version 1 is not supported"
    async with Worker(_settings(scheduler.address), JobRegistry()) as worker:
        await asyncio.wait_for(worker.connected.wait(), 10)
    assert scheduler.streams == 2
    assert len(scheduler.hellos()) == 2


async def test_assignment_reports_in_order(harness: Harness) -> None:
    await asyncio.wait_for(harness.worker.connected.wait(), 10)
    harness.open_gates()

    harness.scheduler.assign("run-1")
    result = await harness.scheduler.wait_for_result("run-1")

    assert result.outcome == pb.ATTEMPT_OUTCOME_SUCCEEDED
    assert dict(result.output) == {"fetch": 3, "count": 3, "seen": ["fetch"]}
    log = harness.scheduler.log_of("run-1")
    assert log[0] == "started:fetch"
    assert log[-3:] == ["progress:count", "finished:count", "result"]
    assert log.index("finished:fetch") < log.index("started:count")
    assert {entry for entry in log if entry.startswith("progress")} == {
        "progress:fetch",
        "progress:count",
    }
    finished = [
        r.step_report.finished
        for r in harness.scheduler.received
        if describe(r).startswith("finished")
    ]
    assert [f.state for f in finished] == [runs_pb2.STEP_STATE_SUCCEEDED] * 2
    assert dict(finished[0].output) == {"fetch": 3, "seen": []}
    assert harness.worker.running() == []


async def test_completed_steps_skipped_and_outputs_visible(harness: Harness) -> None:
    await asyncio.wait_for(harness.worker.connected.wait(), 10)
    harness.open_gates()

    harness.scheduler.assign("run-2", attempt=2, completed={"fetch": {"fetched": 7}})
    result = await harness.scheduler.wait_for_result("run-2", 2)

    assert result.outcome == pb.ATTEMPT_OUTCOME_SUCCEEDED
    assert harness.fetch.runs == 0
    assert "started:fetch" not in harness.scheduler.log_of("run-2", 2)
    assert dict(result.output) == {"fetched": 7, "count": 3, "seen": ["fetch"]}


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (TransientError("GitHub is down", code="GITHUB_UNAVAILABLE"), "GITHUB_UNAVAILABLE", True),
        (RuntimeError("boom"), "INTERNAL", False),
    ],
)
async def test_failed_step_fails_the_attempt(
    scheduler: FakeScheduler, error: Exception, code: str, retryable: bool
) -> None:
    registry = JobRegistry()
    registry.register(Job(JobKind.CRAWL, [FailStep("fetch", error)]))
    async with Worker(_settings(scheduler.address), registry) as worker:
        await asyncio.wait_for(worker.connected.wait(), 10)
        scheduler.assign("run-3")
        result = await scheduler.wait_for_result("run-3")

    assert result.outcome == pb.ATTEMPT_OUTCOME_FAILED
    assert (result.error.code, result.error.retryable) == (code, retryable)
    assert scheduler.log_of("run-3") == ["started:fetch", "finished:fetch", "result"]
    finished = next(r for r in scheduler.received if describe(r) == "finished:fetch")
    assert finished.step_report.finished.state == runs_pb2.STEP_STATE_FAILED
    assert finished.step_report.finished.message


async def test_unknown_job_fails_without_retry(harness: Harness) -> None:
    await asyncio.wait_for(harness.worker.connected.wait(), 10)
    harness.scheduler.assign("run-4", spec=BackfillLinksSpec("octo/repo"))
    result = await harness.scheduler.wait_for_result("run-4")

    assert result.outcome == pb.ATTEMPT_OUTCOME_FAILED
    assert (result.error.code, result.error.retryable) == ("UNKNOWN_JOB", False)


async def test_cancel_stops_at_a_safe_point(harness: Harness) -> None:
    await asyncio.wait_for(harness.worker.connected.wait(), 10)
    harness.scheduler.assign("run-5")
    await asyncio.wait_for(harness.fetch.entered.wait(), 10)

    harness.scheduler.cancel("run-5")
    result = await harness.scheduler.wait_for_result("run-5")

    assert result.outcome == pb.ATTEMPT_OUTCOME_CANCELLED
    assert harness.scheduler.log_of("run-5")[-2:] == ["finished:fetch", "result"]
    finished = next(r for r in harness.scheduler.received if describe(r) == "finished:fetch")
    assert finished.step_report.finished.state == runs_pb2.STEP_STATE_CANCELLED
    assert harness.count.runs == 0


async def test_abandon_stops_at_once_and_reports_nothing_more(harness: Harness) -> None:
    await asyncio.wait_for(harness.worker.connected.wait(), 10)
    harness.fetch.heed_stop = False
    harness.scheduler.assign("run-6")
    await asyncio.wait_for(harness.fetch.entered.wait(), 10)

    harness.scheduler.abandon("run-6")
    await asyncio.wait_for(harness.fetch.killed.wait(), 10)

    assert harness.worker.running() == []
    # A later attempt completes: everything the crawler queued before it has been sent by then.
    harness.open_gates()
    harness.scheduler.assign("run-7")
    await harness.scheduler.wait_for_result("run-7")
    log = harness.scheduler.log_of("run-6")
    assert "result" not in log
    assert not any(entry.startswith("finished") for entry in log)


async def test_lease_not_renewed_stops_the_attempt(scheduler: FakeScheduler) -> None:
    scheduler.lease_ttl, scheduler.heartbeat_interval = 0.3, 0.05
    scheduler.auto_ack = False
    step = GateStep("fetch", heed_stop=False)
    registry = JobRegistry()
    registry.register(Job(JobKind.CRAWL, [step]))
    async with Worker(_settings(scheduler.address), registry) as worker:
        await asyncio.wait_for(worker.connected.wait(), 10)
        scheduler.assign("run-8")

        await asyncio.wait_for(step.killed.wait(), 10)

        assert worker.running() == []
        heartbeat = await scheduler.wait_for(_kind("heartbeat"))
        assert heartbeat.heartbeat.in_flight[0].run_id == "run-8"
    assert "result" not in scheduler.log_of("run-8")


async def test_renewed_lease_outlives_its_ttl(scheduler: FakeScheduler) -> None:
    scheduler.lease_ttl, scheduler.heartbeat_interval = 2.0, 0.15
    step = GateStep("fetch")
    registry = JobRegistry()
    registry.register(Job(JobKind.CRAWL, [step]))
    async with Worker(_settings(scheduler.address), registry) as worker:
        await asyncio.wait_for(worker.connected.wait(), 10)
        scheduler.assign("run-9")
        await asyncio.wait_for(step.entered.wait(), 10)
        # 20 heartbeats take at least 3s, longer than the 2s lease: only the acks kept the
        # attempt alive (each ack renews it with seconds to spare, even on a loaded machine).
        await scheduler.wait_for(_kind("heartbeat"), count=20)
        step.gate.set()
        result = await scheduler.wait_for_result("run-9")
    assert result.outcome == pb.ATTEMPT_OUTCOME_SUCCEEDED
    assert not step.killed.is_set()


async def test_reconnect_reattaches_and_flushes_buffered_reports(harness: Harness) -> None:
    scheduler = harness.scheduler
    await asyncio.wait_for(harness.worker.connected.wait(), 10)
    scheduler.assign("run-10")
    await asyncio.wait_for(harness.fetch.entered.wait(), 10)
    # Received, not only sent: on a loaded machine it was still in the outbox at the drop.
    await scheduler.wait_for(lambda request: describe(request) == "started:fetch")

    scheduler.welcome_gate.clear()
    scheduler.drop()
    await scheduler.wait_for(_kind("hello"), count=2)
    harness.open_gates()  # the attempt finishes while the crawler is not welcomed
    await asyncio.wait_for(harness.count.returned.wait(), 10)
    assert not harness.worker.connected.is_set()
    received_before_welcome = len(scheduler.received)
    scheduler.welcome_gate.set()
    result = await scheduler.wait_for_result("run-10")

    assert result.outcome == pb.ATTEMPT_OUTCOME_SUCCEEDED
    hello = scheduler.hellos()[1]
    assert [(ref.run_id, ref.attempt) for ref in hello.in_flight] == [("run-10", 1)]
    flushed = [describe(r) for r in scheduler.received[received_before_welcome:]]
    flushed = [label for label in flushed if label != "heartbeat"]
    # A progress report in flight when the stream broke is sent again before the newer one.
    flushed = [
        label
        for index, label in enumerate(flushed)
        if not (label.startswith("progress:") and flushed[index + 1 : index + 2] == [label])
    ]
    assert flushed == [
        "progress:fetch",
        "finished:fetch",
        "started:count",
        "progress:count",
        "finished:count",
        "result",
    ]


async def test_abandoned_in_welcome_is_stopped(harness: Harness) -> None:
    scheduler = harness.scheduler
    await asyncio.wait_for(harness.worker.connected.wait(), 10)
    harness.fetch.heed_stop = False
    scheduler.assign("run-11")
    await asyncio.wait_for(harness.fetch.entered.wait(), 10)

    scheduler.abandon_on_welcome.add(("run-11", 1))
    scheduler.drop()
    await asyncio.wait_for(harness.fetch.killed.wait(), 10)

    assert [(r.run_id, r.attempt) for r in scheduler.hellos()[1].in_flight] == [("run-11", 1)]
    assert harness.worker.running() == []
    assert "result" not in scheduler.log_of("run-11")


async def test_stop_drains_and_releases(scheduler: FakeScheduler) -> None:
    polite, stubborn = GateStep("fetch"), GateStep("fetch", heed_stop=False)
    registry = JobRegistry()
    registry.register(Job(JobKind.CRAWL, [polite]))
    registry.register(Job(JobKind.RECALCULATE, [stubborn]))
    worker = Worker(_settings(scheduler.address, shutdown_grace=0.05), registry)
    await worker.start()
    await asyncio.wait_for(worker.connected.wait(), 10)
    scheduler.assign("run-12")
    scheduler.assign("run-13", spec=RecalculateSpec(("octo/repo",), steps=("fetch",)))
    await asyncio.wait_for(polite.entered.wait(), 10)
    await asyncio.wait_for(stubborn.entered.wait(), 10)

    await worker.stop()

    assert stubborn.killed.is_set()
    labels = [describe(r) for r in scheduler.received]
    drain = labels.index("drain")
    for run_id in ("run-12", "run-13"):
        result = await scheduler.wait_for_result(run_id)
        assert result.outcome == pb.ATTEMPT_OUTCOME_RELEASED
        assert scheduler.log_of(run_id)[-1] == "result"
        assert "finished:fetch" not in scheduler.log_of(run_id)
        index = next(i for i, r in enumerate(scheduler.received) if r.result.ref.run_id == run_id)
        assert index > drain
    assert not worker.connected.is_set()


async def test_silent_scheduler_makes_the_crawler_reconnect(scheduler: FakeScheduler) -> None:
    scheduler.lease_ttl, scheduler.heartbeat_interval = 0.2, 0.02
    scheduler.auto_ack = False
    async with Worker(_settings(scheduler.address), JobRegistry()) as worker:
        await scheduler.wait_for(_kind("hello"), count=2)
        await asyncio.wait_for(worker.connected.wait(), 10)
    assert scheduler.streams >= 2


async def test_stop_twice_drains_once(scheduler: FakeScheduler) -> None:
    worker = Worker(_settings(scheduler.address), JobRegistry())
    await worker.start()
    await asyncio.wait_for(worker.connected.wait(), 10)

    await asyncio.gather(worker.stop(), worker.stop())
    await worker.stop()

    assert [describe(r) for r in scheduler.received] == ["hello", "drain"]
