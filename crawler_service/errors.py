"""The crawler's exceptions."""

from __future__ import annotations

from common.errors import GhpulseError, NotFound


class CrawlerError(GhpulseError):
    """The crawler failed."""

    reason = "CRAWLER_ERROR"


class StepFailed(CrawlerError):
    """A step failed."""

    reason = "STEP_FAILED"

    def __init__(
        self,
        message: str | None = None,
        *,
        retryable: bool,
        code: str = "STEP_FAILED",
        **metadata: object,
    ) -> None:
        self.retryable = retryable
        self.code = code
        super().__init__(message, **metadata)


class TransientError(StepFailed):
    """A step failed for a reason that may go away (upstream unavailable, rate limited)."""

    def __init__(
        self, message: str | None = None, code: str = "TRANSIENT", **metadata: object
    ) -> None:
        super().__init__(message, retryable=True, code=code, **metadata)


class PermanentError(StepFailed):
    """A step failed for a reason retrying will not fix."""

    def __init__(
        self, message: str | None = None, code: str = "PERMANENT", **metadata: object
    ) -> None:
        super().__init__(message, retryable=False, code=code, **metadata)


class HandBack(CrawlerError):
    """The attempt cannot go on now: the run is handed back, to be dispatched again after
    `retry_after` seconds, without using up an attempt (its finished work is kept)."""

    reason = "HAND_BACK"

    def __init__(
        self, message: str | None = None, *, retry_after: float, code: str, **metadata: object
    ) -> None:
        self.retry_after = retry_after
        self.code = code
        super().__init__(message, retry_after=retry_after, **metadata)


class UnknownJob(CrawlerError, NotFound):
    """This crawler has no job of that kind."""

    reason = "UNKNOWN_JOB"


class AttemptStopped(Exception):
    """Raised at a safe point when the attempt was cancelled, abandoned or handed back."""
