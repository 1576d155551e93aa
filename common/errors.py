"""The error kinds shared by both services.

Each service derives its own base exception from `GhpulseError` and its specific errors from the
kinds below (`InvalidArgument`, `NotFound`, ...). A subclass's docstring is its default message;
structured context goes into attributes. The mapping to gRPC status and `google.rpc` details
lives in `common.grpc_errors`, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request (a `google.rpc.BadRequest` field violation)."""

    field: str
    description: str


class GhpulseError(Exception):
    """An error in ghpulse."""

    #: `google.rpc.ErrorInfo.reason`: a stable UPPER_SNAKE_CASE identifier.
    reason: str = "INTERNAL"

    def __init__(self, message: str | None = None, **metadata: object) -> None:
        self.message = message or (self.__doc__ or self.reason).strip().splitlines()[0]
        #: Structured context, exposed as `ErrorInfo.metadata` (values stringified).
        self.metadata: Mapping[str, object] = metadata
        super().__init__(self.message)


class InvalidArgument(GhpulseError):
    """The request is invalid."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self, violations: Sequence[FieldViolation], message: str | None = None, **metadata: object
    ) -> None:
        self.violations = tuple(violations)
        if message is None and self.violations:
            message = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message, **metadata)


class NotFound(GhpulseError):
    """The requested resource does not exist."""

    reason = "NOT_FOUND"


class AlreadyExists(GhpulseError):
    """The resource already exists."""

    reason = "ALREADY_EXISTS"


class FailedPrecondition(GhpulseError):
    """The resource is not in a state that allows this operation."""

    reason = "FAILED_PRECONDITION"


class Unauthenticated(GhpulseError):
    """Missing or invalid credentials."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(GhpulseError):
    """The credentials do not allow this operation."""

    reason = "PERMISSION_DENIED"


class ResourceExhausted(GhpulseError):
    """A limit was reached; retry later."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self, message: str | None = None, retry_after: timedelta | None = None, **metadata: object
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, **metadata)


class Unavailable(GhpulseError):
    """The service is temporarily unavailable; retry later."""

    reason = "UNAVAILABLE"

    def __init__(
        self, message: str | None = None, retry_after: timedelta | None = None, **metadata: object
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, **metadata)


#: How much of a bad value an error may quote: enough to recognize it, never enough to blow the
#: gRPC metadata limit (a status's message and details travel in headers of 8-16 KiB).
QUOTE_LIMIT = 40


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` cut to `limit` characters (with `…` when cut), e.g. a map key in a field path."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters (with `…` when cut), for error messages."""
    return clip(repr(value), limit)


def require(violations: list[FieldViolation]) -> None:
    """Raise `InvalidArgument` if any violation was collected."""
    if violations:
        raise InvalidArgument(violations)
