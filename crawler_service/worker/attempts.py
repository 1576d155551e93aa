"""The attempts a crawler holds: their tasks, local lease deadlines and stop requests.

An attempt is held from its assignment until its result has been sent (or it is abandoned). Its
lease is a local monotonic timer: if the scheduler does not renew it in time, the attempt is
abandoned here before the scheduler hands it to another crawler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from common.jobs import job_from_pb
from common.proto.ghpulse.v1 import worker_service_pb2 as pb
from crawler_service.jobs.registry import JobRegistry, Output
from crawler_service.worker import messages as msg
from crawler_service.worker.outbox import Outbox
from crawler_service.worker.runner import (
    AttemptError,
    AttemptKey,
    AttemptOutcome,
    AttemptRunner,
    StepOutcome,
    StopReason,
    StopSignal,
)

log = structlog.get_logger(__name__)

#: Stop an attempt at this fraction of its lease, before the scheduler gives it to another crawler.
LEASE_SAFETY = 0.9
#: Used until the scheduler's welcome says otherwise.
DEFAULT_LEASE_TTL = 30.0


@dataclass(eq=False)
class _Attempt:
    key: AttemptKey
    signal: StopSignal = field(default_factory=StopSignal)
    task: asyncio.Task[None] | None = None
    lease: asyncio.TimerHandle | None = None
    #: Set once the attempt is no longer ours: nothing more may be reported for it.
    silenced: bool = False
    result_queued: bool = False

    @property
    def executing(self) -> bool:
        return self.task is not None and not self.task.done()


class _OutboxReporter:
    """Turns an attempt's reports into protocol messages in the outbox (unless it was silenced)."""

    def __init__(self, attempt: _Attempt, outbox: Outbox[pb.ConnectRequest]) -> None:
        self._attempt = attempt
        self._outbox = outbox

    def _put(self, message: pb.ConnectRequest, replace_key: object = None) -> None:
        if not self._attempt.silenced:
            self._outbox.put(self._attempt.key, message, replace_key)

    def started(self, step: str, total: int, message: str) -> None:
        self._put(msg.step_started(self._attempt.key, step, total, message))

    def progress(self, step: str, current: int, total: int, message: str) -> None:
        report = msg.step_progress(self._attempt.key, step, current, total, message)
        self._put(report, replace_key=(self._attempt.key, step))

    def finished(
        self, step: str, outcome: StepOutcome, output: Output | None, message: str
    ) -> None:
        self._put(msg.step_finished(self._attempt.key, step, outcome, output, message))

    def result(
        self, outcome: AttemptOutcome, output: Output | None, error: AttemptError | None
    ) -> None:
        self._put(msg.result(self._attempt.key, outcome, output, error))
        self._attempt.result_queued = True


class AttemptTable:
    """The attempts this crawler holds, keyed by (run_id, attempt)."""

    def __init__(self, registry: JobRegistry, outbox: Outbox[pb.ConnectRequest]) -> None:
        self._registry = registry
        self._outbox = outbox
        self._attempts: dict[AttemptKey, _Attempt] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Seconds a lease lasts from its (local) renewal; the scheduler's welcome sets it.
        self.lease_ttl = DEFAULT_LEASE_TTL

    def __len__(self) -> int:
        return len(self._attempts)

    def __contains__(self, key: object) -> bool:
        return key in self._attempts

    def held(self) -> list[AttemptKey]:
        """Attempts executing or whose result has not been sent yet."""
        return list(self._attempts)

    def running(self) -> list[AttemptKey]:
        """Attempts executing now."""
        return [key for key, attempt in self._attempts.items() if attempt.executing]

    def assign(self, assignment: pb.Assignment, *, release: bool = False) -> None:
        """Start executing `assignment` (or, with `release`, hand it straight back)."""
        key = msg.key_from_pb(assignment.ref)
        if key in self._attempts:
            log.warning("attempt.duplicate_assignment", run_id=key.run_id, attempt=key.attempt)
            return
        attempt = self._attempts[key] = _Attempt(key)
        self.renew(key)
        reporter = _OutboxReporter(attempt, self._outbox)
        if release:
            reporter.result(AttemptOutcome.RELEASED, None, None)
            return
        spec = job_from_pb(assignment)
        completed = msg.completed_outputs(assignment)
        runner = AttemptRunner(self._registry, key, spec, completed, reporter, attempt.signal)
        attempt.task = asyncio.create_task(runner.run(), name=f"attempt-{key.run_id}-{key.attempt}")
        self._tasks.add(attempt.task)
        attempt.task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("attempt.crashed", task=task.get_name(), exc_info=task.exception())

    def renew(self, key: AttemptKey) -> None:
        """Restart `key`'s lease from now (local monotonic time: never the scheduler's clock)."""
        attempt = self._attempts.get(key)
        if attempt is None:
            return
        if attempt.lease is not None:
            attempt.lease.cancel()
        attempt.lease = asyncio.get_running_loop().call_later(
            self.lease_ttl * LEASE_SAFETY, self.abandon, key, "lease expired"
        )

    def reattach(self, keys: Iterable[AttemptKey]) -> None:
        """Renew `keys`; abandon every other attempt (the scheduler no longer counts it as ours)."""
        keep = set(keys)
        for key in list(self._attempts):
            if key in keep:
                self.renew(key)
            else:
                self.abandon(key, "not re-attached")

    def cancel(self, key: AttemptKey, reason: str) -> None:
        """Stop `key` at its next safe point; it reports CANCELLED."""
        attempt = self._attempts.get(key)
        log.info("attempt.cancelling", run_id=key.run_id, attempt=key.attempt, reason=reason)
        if attempt is not None:
            attempt.signal.request(StopReason.CANCEL)

    def abandon(self, key: AttemptKey, reason: str) -> None:
        """Stop `key` at once, drop its buffered reports and report nothing more for it."""
        attempt = self._attempts.pop(key, None)
        if attempt is None:
            return
        attempt.silenced = True
        if attempt.lease is not None:
            attempt.lease.cancel()
        if attempt.task is not None:
            attempt.task.cancel()
        dropped = self._outbox.drop(key)
        log.warning(
            "attempt.abandoned",
            run_id=key.run_id,
            attempt=key.attempt,
            reason=reason,
            dropped_reports=dropped,
        )

    def forget(self, key: AttemptKey) -> None:
        """The result of `key` was sent: it is no longer held."""
        attempt = self._attempts.pop(key, None)
        if attempt is not None and attempt.lease is not None:
            attempt.lease.cancel()

    async def release_all(self, grace: float) -> None:
        """Ask every executing attempt to stop and hand its run back (RELEASED) within `grace`s."""
        attempts = [attempt for attempt in self._attempts.values() if attempt.executing]
        for attempt in attempts:
            attempt.signal.request(StopReason.DRAIN)
        tasks = [attempt.task for attempt in attempts if attempt.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for attempt in attempts:
            if not attempt.silenced and not attempt.result_queued:
                _OutboxReporter(attempt, self._outbox).result(AttemptOutcome.RELEASED, None, None)

    async def close(self) -> None:
        """Abandon whatever is still held and wait for every task to end."""
        for key in list(self._attempts):
            self.abandon(key, "worker stopped")
        await asyncio.gather(*self._tasks, return_exceptions=True)
