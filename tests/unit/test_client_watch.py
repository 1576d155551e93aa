"""Resuming watches and folding WatchRun messages, with a scripted stub (no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from common.client.aio import build_trigger_request
from common.client.watch import Backoff, RunView, WatchGaveUp, follow_run
from common.jobs import CrawlSpec
from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="boom", debug_error_string=None
    )


def snapshot(state: int = runs_pb2.RUN_STATE_RUNNING, last_seq: int = 0) -> spb.WatchRunResponse:
    return spb.WatchRunResponse(snapshot=runs_pb2.Run(id="r", state=state, last_seq=last_seq))  # type: ignore[arg-type]


def progress(seq: int, step: str = "fetch", current: int = 1) -> spb.WatchRunResponse:
    event = runs_pb2.RunEvent(
        seq=seq, step_progress=runs_pb2.StepProgress(step=step, current=current, total=4)
    )
    return spb.WatchRunResponse(event=event)


def ended(seq: int, state: int = runs_pb2.RUN_STATE_SUCCEEDED) -> spb.WatchRunResponse:
    event = runs_pb2.RunEvent(seq=seq, state_changed=runs_pb2.RunStateChanged(state=state))  # type: ignore[arg-type]
    return spb.WatchRunResponse(event=event)


class Call:
    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[spb.WatchRunResponse]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[spb.WatchRunResponse]:
        for item in self.items:
            if isinstance(item, BaseException):
                raise item
            yield item

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class ScriptedStub:
    """Each WatchRun call plays the next script; records the requests."""

    def __init__(self, *scripts: list[Any]) -> None:
        self.scripts = list(scripts)
        self.requests: list[spb.WatchRunRequest] = []

    def WatchRun(self, request: spb.WatchRunRequest) -> Call:
        self.requests.append(request)
        return Call(self.scripts.pop(0))


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 0.0

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += delay

    def clock(self) -> float:
        return self.now


async def collect(stub: ScriptedStub, sleeps: Sleeps, backoff: Backoff | None = None) -> list[Any]:
    stream = follow_run(
        stub,  # type: ignore[arg-type]
        "r",
        backoff=backoff or Backoff(0.1, 0.4, 10),
        sleep=sleeps.sleep,
        clock=sleeps.clock,
    )
    return [message async for message in stream]


async def test_resumes_after_the_last_event_seen() -> None:
    unavailable = rpc_error(grpc.StatusCode.UNAVAILABLE)
    stub = ScriptedStub(
        [snapshot(), progress(1), progress(2), unavailable],
        [unavailable],
        [snapshot(last_seq=3), progress(3), ended(4)],
    )
    sleeps = Sleeps()

    messages = await collect(stub, sleeps)

    assert [r.after_seq for r in stub.requests] == [0, 2, 2]
    assert sleeps.delays == [0.1, 0.2]
    assert [m.event.seq for m in messages if m.HasField("event")] == [1, 2, 3, 4]


async def test_a_stream_that_ends_early_is_resumed_too() -> None:
    stub = ScriptedStub([snapshot(), progress(1)], [snapshot(), ended(2)])

    messages = await collect(stub, Sleeps())

    assert [r.after_seq for r in stub.requests] == [0, 1]
    assert messages[-1] == ended(2)


async def test_a_finished_run_ends_at_its_snapshot() -> None:
    stub = ScriptedStub([snapshot(runs_pb2.RUN_STATE_FAILED, last_seq=0)])

    assert len(await collect(stub, Sleeps())) == 1


async def test_other_errors_are_raised() -> None:
    stub = ScriptedStub([rpc_error(grpc.StatusCode.NOT_FOUND)])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(stub, Sleeps())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_gives_up_after_a_long_silence() -> None:
    stub = ScriptedStub(*([rpc_error(grpc.StatusCode.UNAVAILABLE)] for _ in range(10)))
    sleeps = Sleeps()

    with pytest.raises(WatchGaveUp):
        await collect(stub, sleeps, Backoff(1.0, 1.0, give_up_after=3.5))
    assert sleeps.delays == [1.0, 1.0, 1.0, 1.0]


def test_backoff_doubles_up_to_its_maximum() -> None:
    backoff = Backoff(0.2, 1.0)

    assert [backoff.delay(n) for n in range(1, 6)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_run_view_folds_snapshot_and_events() -> None:
    run = runs_pb2.Run(
        id="r", state=runs_pb2.RUN_STATE_RUNNING, attempt=1,
        steps=[runs_pb2.Step(name="fetch", state=runs_pb2.STEP_STATE_RUNNING, current=1, total=4),
               runs_pb2.Step(name="upsert", state=runs_pb2.STEP_STATE_PENDING)],
    )  # fmt: skip
    view = RunView("r")
    view.apply(spb.WatchRunResponse(snapshot=run))
    view.apply(progress(5, "fetch", 3))
    finished = runs_pb2.StepFinished(step="fetch", state=runs_pb2.STEP_STATE_SUCCEEDED)
    view.apply(spb.WatchRunResponse(event=runs_pb2.RunEvent(seq=6, step_finished=finished)))
    started = runs_pb2.StepStarted(step="upsert", total=2)
    view.apply(spb.WatchRunResponse(event=runs_pb2.RunEvent(seq=7, step_started=started)))
    error = runs_pb2.RunError(code="X", message="bad")
    changed = runs_pb2.RunStateChanged(state=runs_pb2.RUN_STATE_FAILED, attempt=2, error=error)
    view.apply(spb.WatchRunResponse(event=runs_pb2.RunEvent(seq=8, state_changed=changed)))

    assert list(view.steps) == ["fetch", "upsert"]
    assert (view.steps["fetch"].state, view.steps["fetch"].current) == (
        runs_pb2.STEP_STATE_SUCCEEDED,
        3,
    )
    assert (view.steps["upsert"].state, view.steps["upsert"].total) == (
        runs_pb2.STEP_STATE_RUNNING,
        2,
    )
    assert view.finished
    assert (view.attempt, view.error) == (2, error)


def test_trigger_requests_always_carry_a_request_id() -> None:
    first = build_trigger_request(CrawlSpec(("o/r",)), labels={"a": "b"})
    second = build_trigger_request(CrawlSpec(("o/r",)))
    given = build_trigger_request(CrawlSpec(organization="o"), request_id="mine")

    assert first.request_id != second.request_id
    assert len(first.request_id) == 36
    assert given.request_id == "mine"
    assert list(first.crawl.repositories) == ["o/r"]
    assert given.crawl.organization == "o"
    assert dict(first.labels) == {"a": "b"}
