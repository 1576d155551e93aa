"""Executing one attempt of a run: its job's steps in order, reported through an `AttemptReporter`.

This module knows nothing of the wire: the worker turns reports into protocol messages. Steps
completed by an earlier attempt are skipped and their outputs reused; a stop request (cancel or
drain) is honoured at the steps' safe points and between steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import httpx
import structlog
from sqlalchemy.exc import OperationalError

from common.jobs import JobSpec
from crawler_service.errors import AttemptStopped, HandBack, StepFailed, UnknownJob
from crawler_service.jobs.registry import JobRegistry, Output, Step, StepContext

log = structlog.get_logger(__name__)


class AttemptKey(NamedTuple):
    """The fencing token of an assignment: a run and its attempt number."""

    run_id: str
    attempt: int


class StepOutcome(Enum):
    """How a step of this attempt ended, as reported to the scheduler (which stores it as the
    step's `StepState`)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptOutcome(Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: Stopped because the scheduler cancelled it.
    CANCELLED = "cancelled"
    #: Handed back unfinished: the crawler is draining, or the run must wait (`HandBack`).
    RELEASED = "released"


class StopReason(Enum):
    CANCEL = "cancel"
    DRAIN = "drain"


@dataclass(frozen=True)
class AttemptError:
    """Why an attempt failed, as the scheduler records it."""

    code: str
    message: str
    retryable: bool
    #: With a RELEASED result: dispatch the run again no sooner than this many seconds.
    retry_after: float | None = None


class StopSignal:
    """Asks an attempt to stop at its next safe point; the first reason given wins."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason: StopReason | None = None

    def request(self, reason: StopReason) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()


class AttemptReporter(Protocol):
    """Receives an attempt's reports in order. Calls must be cheap and must not block."""

    def started(self, step: str, total: int, message: str) -> None: ...

    def progress(self, step: str, current: int, total: int, message: str) -> None: ...

    def finished(
        self, step: str, outcome: StepOutcome, output: Output | None, message: str
    ) -> None: ...

    def result(
        self, outcome: AttemptOutcome, output: Output | None, error: AttemptError | None
    ) -> None: ...


def attempt_error(exc: BaseException) -> AttemptError:
    """The error reported for an attempt that raised `exc`."""
    if isinstance(exc, UnknownJob):
        return AttemptError("UNKNOWN_JOB", exc.message, retryable=False)
    if isinstance(exc, StepFailed):
        return AttemptError(exc.code, exc.message, retryable=exc.retryable)
    # TimeoutError is an OSError: a timed-out database or network call is worth retrying.
    if isinstance(exc, OperationalError | httpx.TransportError | OSError):
        return AttemptError("TRANSIENT", _describe(exc), retryable=True)
    return AttemptError("INTERNAL", _describe(exc), retryable=False)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class AttemptRunner:
    """Runs one attempt to its end; never raises except `asyncio.CancelledError`."""

    def __init__(
        self,
        registry: JobRegistry,
        key: AttemptKey,
        spec: JobSpec | None,
        completed: Mapping[str, Output],
        reporter: AttemptReporter,
        signal: StopSignal,
    ) -> None:
        self._registry = registry
        self._key = key
        self._spec = spec
        self._completed = dict(completed)
        self._reporter = reporter
        self._signal = signal
        self._current: str | None = None

    async def run(self) -> None:
        """Execute the attempt and report its steps and result."""
        structlog.contextvars.bind_contextvars(run_id=self._key.run_id, attempt=self._key.attempt)
        log.info("attempt.started", kind=self._spec.kind if self._spec else None)
        try:
            output = await self._run_job()
            self._reporter.result(AttemptOutcome.SUCCEEDED, output, None)
        except AttemptStopped:
            self._stopped()
        except HandBack as exc:
            self._handed_back(exc)
        except Exception as exc:
            self._failed(exc)
        else:
            log.info("attempt.finished", outcome=AttemptOutcome.SUCCEEDED.value)

    async def _run_job(self) -> Output:
        if self._spec is None:
            raise UnknownJob("the assignment names no job this crawler knows", kind="unspecified")
        spec = self._spec
        job = self._registry.get(spec.kind)
        outputs: dict[str, Output] = {}
        for step in job.attempt_steps(spec):
            if step.name in self._completed:
                outputs[step.name] = self._completed[step.name]
                continue
            self._check_stopped()
            outputs[step.name] = await self._run_step(step, spec, outputs)
        return job.summary(spec, outputs)

    async def _run_step(self, step: Step, spec: JobSpec, outputs: dict[str, Output]) -> Output:
        self._current = step.name
        self._reporter.started(step.name, 0, "")
        ctx = StepContext(
            run_id=self._key.run_id,
            attempt=self._key.attempt,
            spec=spec,
            step=step.name,
            # Later steps see earlier outputs, of this attempt and of earlier ones.
            outputs=MappingProxyType({**self._completed, **outputs}),
            _sink=self._progress,
            _stop=self._signal.event,
        )
        with structlog.contextvars.bound_contextvars(step=step.name):
            output = await step.run(ctx)
            self._reporter.finished(step.name, StepOutcome.SUCCEEDED, output, "")
        self._current = None
        return output

    async def _progress(self, step: str, current: int, total: int, message: str) -> None:
        self._reporter.progress(step, current, total, message)

    def _check_stopped(self) -> None:
        if self._signal.event.is_set():
            raise AttemptStopped

    def _stopped(self) -> None:
        if self._signal.reason is StopReason.DRAIN:
            outcome = AttemptOutcome.RELEASED
        else:
            outcome = AttemptOutcome.CANCELLED
            if self._current is not None:
                self._reporter.finished(self._current, StepOutcome.CANCELLED, None, "cancelled")
        self._reporter.result(outcome, None, None)
        log.info("attempt.finished", outcome=outcome.value, step=self._current)

    def _handed_back(self, exc: HandBack) -> None:
        error = AttemptError(exc.code, exc.message, retryable=True, retry_after=exc.retry_after)
        self._end(
            AttemptOutcome.RELEASED, StepOutcome.CANCELLED, error, retry_after=exc.retry_after
        )

    def _failed(self, exc: Exception) -> None:
        error = attempt_error(exc)
        if error.code == "INTERNAL":
            log.error("attempt.internal_error", step=self._current, exc_info=exc)
        self._end(AttemptOutcome.FAILED, StepOutcome.FAILED, error, retryable=error.retryable)

    def _end(
        self, outcome: AttemptOutcome, step: StepOutcome, error: AttemptError, **logged: Any
    ) -> None:
        """Report the current step's end and the attempt's `outcome` with `error`, and log it."""
        if self._current is not None:
            self._reporter.finished(self._current, step, None, error.message)
        self._reporter.result(outcome, None, error)
        log.info(
            "attempt.finished",
            outcome=outcome.value,
            step=self._current,
            code=error.code,
            **logged,
        )
