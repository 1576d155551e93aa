"""The orderings of the hot path's writes, without a database: urgent work passes queued work on
the database threads; a crawler's reports are ordered per run and concurrent across runs; step
reports are batched per attempt and handed to the attempt's result."""

from __future__ import annotations

import asyncio
import functools
import threading

from scheduler_service.orchestration.batching import StepBatches
from scheduler_service.orchestration.pipeline import Pipeline
from scheduler_service.runs.model import AttemptRef, EventKind, StepReport
from scheduler_service.runs.sql.lanes import Lanes


def test_urgent_work_runs_before_queued_normal_work() -> None:
    lanes, gate, order = Lanes(1, "test"), threading.Event(), list[str]()
    lanes.submit(gate.wait)
    done = [lanes.submit(functools.partial(order.append, f"trigger{i}")) for i in range(3)]
    done.append(lanes.submit(lambda: order.append("result"), urgent=True))
    gate.set()
    for future in done:
        future.result(timeout=10)
    lanes.shutdown()
    assert order == ["result", "trigger0", "trigger1", "trigger2"]


async def test_reports_are_ordered_per_run_and_concurrent_across_runs() -> None:
    pipeline, order = Pipeline("w1"), list[str]()
    first_a = asyncio.Event()

    async def a1() -> None:
        await first_a.wait()
        order.append("a1")

    async def record(name: str) -> None:
        order.append(name)

    await pipeline.submit("a", a1)
    await pipeline.submit("a", lambda: record("a2"))
    await pipeline.submit("b", lambda: record("b1"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == ["b1"]  # b was not held up by a's first report
    first_a.set()
    await pipeline.drain()
    assert order == ["b1", "a1", "a2"]


async def test_a_failed_report_does_not_stop_the_next() -> None:
    pipeline, order = Pipeline("w1"), list[str]()

    async def fail() -> None:
        raise RuntimeError("database away")

    async def record() -> None:
        order.append("next")

    await pipeline.submit("a", fail)
    await pipeline.submit("a", record)
    await pipeline.drain()
    assert order == ["next"]


REF = AttemptRef("run_1", 1)
STARTED = StepReport(EventKind.STEP_STARTED, "noop", total=1)
PROGRESS = StepReport(EventKind.STEP_PROGRESS, "noop", 1, 1, "1/1")


async def test_reports_within_the_window_are_written_together() -> None:
    written: list[list[StepReport]] = []
    wrote = asyncio.Event()

    async def write(_worker: str, _ref: AttemptRef, reports: list[StepReport]) -> None:
        written.append(reports)
        wrote.set()

    batches = StepBatches(write, window=0.001)
    batches.add("w1", REF, STARTED)
    batches.add("w1", REF, PROGRESS)
    await wrote.wait()
    assert written == [[STARTED, PROGRESS]]


async def test_the_result_takes_the_reports_not_written_yet() -> None:
    written: list[list[StepReport]] = []

    async def write(_worker: str, _ref: AttemptRef, reports: list[StepReport]) -> None:
        written.append(reports)

    batches = StepBatches(write, window=3600)
    batches.add("w1", REF, STARTED)
    assert await batches.take(REF) == [STARTED]
    assert await batches.take(REF) == []
    assert written == []


async def test_the_result_waits_for_the_batch_being_written() -> None:
    release, writing, order = asyncio.Event(), asyncio.Event(), list[str]()

    async def write(_worker: str, _ref: AttemptRef, reports: list[StepReport]) -> None:
        writing.set()
        await release.wait()
        order.append("batch")

    batches = StepBatches(write, window=0.001)
    batches.add("w1", REF, STARTED)
    await writing.wait()
    taking = asyncio.ensure_future(batches.take(REF))
    await asyncio.sleep(0)
    assert not taking.done()
    release.set()
    assert await taking == []
    assert order == ["batch"]


async def test_a_closed_stream_writes_its_open_batches() -> None:
    written: list[list[StepReport]] = []

    async def write(_worker: str, _ref: AttemptRef, reports: list[StepReport]) -> None:
        written.append(reports)

    batches = StepBatches(write, window=3600)
    batches.add("w1", REF, STARTED)
    batches.add("w2", AttemptRef("run_2", 1), PROGRESS)
    await batches.flush("w1")
    assert written == [[STARTED]]
