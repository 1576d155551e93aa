"""The scheduler's exceptions (mapped to gRPC status in `common.grpc_errors`)."""

from __future__ import annotations

from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    GhpulseError,
    InvalidArgument,
    NotFound,
    quote,
)


class SchedulerError(GhpulseError):
    """The scheduler failed."""

    reason = "SCHEDULER_ERROR"


class RunNotFound(SchedulerError, NotFound):
    """No run with this id."""

    reason = "RUN_NOT_FOUND"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {quote(run_id)} not found", run_id=run_id)


class RunConflict(SchedulerError, AlreadyExists):
    """A run with this concurrency key is already active."""

    reason = "RUN_ALREADY_ACTIVE"

    def __init__(self, concurrency_key: str, active_run_id: str) -> None:
        self.concurrency_key = concurrency_key
        self.active_run_id = active_run_id
        super().__init__(
            f"run {active_run_id} is already active for concurrency key {quote(concurrency_key)}",
            concurrency_key=concurrency_key,
            active_run_id=active_run_id,
        )


class IdempotencyMismatch(SchedulerError, InvalidArgument):
    """This request_id was used before with a different request."""

    reason = "REQUEST_ID_REUSED"

    def __init__(self, request_id: str, run_id: str) -> None:
        from common.errors import FieldViolation

        super().__init__(
            [FieldViolation("request_id", "already used with a different request payload")],
            request_id=request_id,
            run_id=run_id,
        )


class RunFinished(SchedulerError, FailedPrecondition):
    """The run already finished."""

    reason = "RUN_FINISHED"

    def __init__(self, run_id: str, state: str, action: str) -> None:
        self.run_id = run_id
        super().__init__(f"cannot {action} run {run_id}: it is {state}", run_id=run_id, state=state)


class RunNotRetryable(SchedulerError, FailedPrecondition):
    """Only a FAILED run can be retried."""

    reason = "RUN_NOT_RETRYABLE"

    def __init__(self, run_id: str, state: str) -> None:
        super().__init__(
            f"only a failed run can be retried; run {run_id} is {state}", run_id=run_id, state=state
        )


class StaleAttempt(SchedulerError):
    """The attempt is no longer the run's current lease holder (fencing token mismatch)."""

    reason = "STALE_ATTEMPT"

    def __init__(self, run_id: str, attempt: int) -> None:
        self.run_id = run_id
        self.attempt = attempt
        super().__init__(
            f"attempt {attempt} of run {run_id} is stale", run_id=run_id, attempt=attempt
        )


class IncompatibleProtocol(SchedulerError, FailedPrecondition):
    """The crawler speaks a Connect protocol version this scheduler does not support."""

    reason = "INCOMPATIBLE_PROTOCOL"

    def __init__(self, version: int, oldest: int, newest: int) -> None:
        self.protocol_version = version
        super().__init__(
            f"crawler protocol version {version} is not supported by this scheduler, which speaks "
            f"versions {oldest} to {newest}: upgrade the schedulers before the crawlers",
            protocol_version=version,
            oldest_supported=oldest,
            newest_supported=newest,
        )
