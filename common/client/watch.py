"""Following a run over WatchRun, resuming after disconnects, and folding what arrives into a view.

`follow_run` yields every WatchRunResponse of a run until its terminal state. When the stream
breaks (the scheduler restarted, the network dropped), it reconnects with backoff and asks for the
events after the last one it yielded (`after_seq`); the scheduler answers with a fresh snapshot,
then those events, so nothing is lost and nothing is repeated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import grpc
import structlog

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb

if TYPE_CHECKING:  # the async stub type exists only in the generated .pyi stub
    from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceAsyncStub

log = structlog.get_logger(__name__)

TERMINAL_STATES = frozenset(
    {runs_pb2.RUN_STATE_SUCCEEDED, runs_pb2.RUN_STATE_FAILED, runs_pb2.RUN_STATE_CANCELLED}
)
#: Codes after which the watch reconnects. CANCELLED is what a stream gets when the scheduler
#: shuts down gracefully and cancels it; this iterator never cancels its own call while reading.
RESUMABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: `initial`, doubling up to `maximum`; give up after `give_up_after`
    seconds without a message (None: never)."""

    initial: float = 0.2
    maximum: float = 2.0
    give_up_after: float | None = 120.0

    def delay(self, failures: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** max(failures - 1, 0)))


class WatchGaveUp(Exception):
    """The scheduler stayed unreachable for longer than the watch's `give_up_after`."""


def is_terminal_message(message: spb.WatchRunResponse, after_seq: int) -> bool:
    """Whether the stream ends after `message` (a terminal event, or a terminal snapshot with
    nothing left after `after_seq`)."""
    if message.HasField("snapshot"):
        run = message.snapshot
        return run.state in TERMINAL_STATES and run.last_seq <= after_seq
    changed = message.event.state_changed
    return message.event.HasField("state_changed") and changed.state in TERMINAL_STATES


async def follow_run(
    stub: SchedulerServiceAsyncStub,
    run_id: str,
    after_seq: int = 0,
    *,
    backoff: Backoff | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[spb.WatchRunResponse]:
    """Every WatchRunResponse of `run_id` after `after_seq` until the run ends, across reconnects.

    Errors other than UNAVAILABLE/CANCELLED (e.g. NOT_FOUND) are raised as `grpc.aio.AioRpcError`.
    """
    backoff = backoff or Backoff()
    failures, quiet_since = 0, clock()
    while True:
        request = spb.WatchRunRequest(run_id=run_id, after_seq=after_seq)
        call = stub.WatchRun(request)
        try:
            async for message in call:
                failures, quiet_since = 0, clock()
                if message.HasField("event"):
                    after_seq = max(after_seq, message.event.seq)
                yield message
                if is_terminal_message(message, after_seq):
                    return
            error: grpc.aio.AioRpcError | None = None
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RESUMABLE_CODES:
                raise
            error = exc
        finally:
            call.cancel()
        failures += 1
        _check_patience(backoff, clock() - quiet_since, error)
        log.info("watch.reconnecting", run_id=run_id, after_seq=after_seq, failures=failures)
        await sleep(backoff.delay(failures))


def _check_patience(backoff: Backoff, quiet: float, error: BaseException | None) -> None:
    if backoff.give_up_after is not None and quiet > backoff.give_up_after:
        raise WatchGaveUp(f"no answer from the scheduler for {quiet:.0f} s") from error


@dataclass(frozen=True)
class StepView:
    """One step as last seen by a watcher."""

    name: str
    state: int = runs_pb2.STEP_STATE_PENDING
    current: int = 0
    total: int = 0
    message: str = ""


@dataclass
class RunView:
    """A run folded from WatchRun messages: the latest state, attempt and steps (in run order)."""

    run_id: str
    state: int = runs_pb2.RUN_STATE_UNSPECIFIED
    attempt: int = 0
    steps: dict[str, StepView] = field(default_factory=dict)
    error: runs_pb2.RunError | None = None
    snapshot: runs_pb2.Run | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def apply(self, message: spb.WatchRunResponse) -> None:
        """Fold one message in: a snapshot replaces everything, an event updates its part."""
        if message.HasField("snapshot"):
            self._apply_snapshot(message.snapshot)
        else:
            self._apply_event(message.event)

    def _apply_snapshot(self, run: runs_pb2.Run) -> None:
        self.snapshot, self.state, self.attempt = run, run.state, run.attempt
        self.error = run.error if run.HasField("error") else None
        self.steps = {
            s.name: StepView(s.name, s.state, s.current, s.total, s.message) for s in run.steps
        }

    def _apply_event(self, event: runs_pb2.RunEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "state_changed":
            changed = event.state_changed
            self.state, self.attempt = changed.state, changed.attempt or self.attempt
            self.error = changed.error if changed.HasField("error") else self.error
        elif kind == "step_started":
            started = event.step_started
            self._set(
                started.step,
                state=runs_pb2.STEP_STATE_RUNNING,
                current=0,
                total=started.total,
                message=started.message,
            )
        elif kind == "step_progress":
            progress = event.step_progress
            self._set(
                progress.step,
                state=runs_pb2.STEP_STATE_RUNNING,
                current=progress.current,
                total=progress.total,
                message=progress.message,
            )
        elif kind == "step_finished":
            finished = event.step_finished
            self._set(finished.step, state=finished.state, message=finished.message)

    def _set(self, name: str, **changes: object) -> None:
        step = self.steps.get(name, StepView(name))
        self.steps[name] = replace(step, **changes)  # type: ignore[arg-type]
