"""The one place where exceptions become gRPC status codes with `google.rpc` details."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import OperationalError

from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    GhpulseError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

DOMAIN = "ghpulse.dev"
log = structlog.get_logger(__name__)

_CODES: list[tuple[type[GhpulseError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
]
#: Longest text of a status message, a field path, a description or a metadata value: whatever
#: a handler quoted, a status stays far below gRPC's 8-16 KiB metadata limit.
MAX_TEXT = 300
#: At most this many field violations are sent (the message says how many there were).
MAX_VIOLATIONS = 20


def status_code(exc: GhpulseError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _violations(exc: InvalidArgument) -> list[error_details_pb2.BadRequest.FieldViolation]:
    return [
        error_details_pb2.BadRequest.FieldViolation(
            field=_cut(v.field), description=_cut(v.description)
        )
        for v in exc.violations[:MAX_VIOLATIONS]
    ]


def _message(exc: GhpulseError) -> str:
    if isinstance(exc, InvalidArgument) and len(exc.violations) > MAX_VIOLATIONS:
        shown = exc.violations[:MAX_VIOLATIONS]
        head = "; ".join(f"{v.field}: {v.description}" for v in shown)
        return _cut(head) + f" (and {len(exc.violations) - MAX_VIOLATIONS} more violations)"
    return _cut(exc.message)


def to_status(exc: GhpulseError) -> grpc.Status:
    """The rich gRPC status for `exc`: code, message, ErrorInfo and kind-specific details; every
    text is cut to `MAX_TEXT` characters, so no bad value echoes back whole."""
    code = status_code(exc)
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=exc.reason,
                domain=DOMAIN,
                metadata={_cut(k): _cut(str(v)) for k, v in exc.metadata.items()},
            )
        )
    ]
    if isinstance(exc, InvalidArgument):
        details.append(_pack(error_details_pb2.BadRequest(field_violations=_violations(exc))))
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(exc, (Unavailable, ResourceExhausted)) and retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(retry_after)
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=code.value[0], message=_message(exc), details=details)
    return rpc_status.to_status(status)


def unexpected_status(exc: BaseException) -> grpc.Status:
    """An INTERNAL status for a bug; the exception itself is logged, not sent."""
    log.exception("rpc.unexpected_error", error=repr(exc))
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message="internal error (see server logs)")
    )


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class _Malformed:
    """What a request that is not valid protobuf deserializes to (checked before the servicer)."""


MALFORMED = _Malformed()


def malformed_request() -> InvalidArgument:
    # Never the decoder's text: it describes the server's internals, not the client's mistake.
    return InvalidArgument(
        [FieldViolation("request", "not a valid protobuf message of this method's request type")]
    )


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer`, returning `MALFORMED` instead of raising on bytes it cannot parse (gRPC
    would answer UNKNOWN with the exception's text)."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return MALFORMED

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if request is MALFORMED:
            raise malformed_request()
        yield request


def status_of(exc: BaseException) -> grpc.Status:
    """The status an RPC that raised `exc` ends with: a `GhpulseError`'s own; UNAVAILABLE (retry)
    for a database that did not answer in time (SQLite's lock past its busy timeout, a lost or
    refused PostgreSQL connection, a statement timeout); INTERNAL for anything else (a bug)."""
    if isinstance(exc, GhpulseError):
        return to_status(exc)
    if isinstance(exc, OperationalError):
        log.warning("rpc.database_unavailable", error=str(exc.orig or exc).splitlines()[0])
        return to_status(
            Unavailable("the database is busy or unreachable; retry", retry_after=_DATABASE_RETRY)
        )
    return unexpected_status(exc)


#: When a client may retry a call the database could not serve.
_DATABASE_RETRY = timedelta(seconds=1)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    await context.abort_with_status(status_of(exc))  # type: ignore[attr-defined]


def _wrap_unary(
    behavior: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]],
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if request is MALFORMED:
                raise malformed_request()
            return await behavior(request, context)
        except (GhpulseError, Exception) as exc:
            if _is_abort(exc):
                raise
            await _abort(context, exc)

    return wrapper


def _wrap_stream(
    behavior: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]],
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
    async def wrapper(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            if request is MALFORMED:
                raise malformed_request()
            if hasattr(request, "__aiter__"):
                request = _checked(request)
            async for item in behavior(request, context):
                yield item
        except Exception as exc:
            if _is_abort(exc):
                raise
            await _abort(context, exc)

    return wrapper


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises grpc.aio.AbortError; it must pass through untouched.
    return isinstance(exc, grpc.aio.AbortError)


Unary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Streaming = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def rewrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    unary: Callable[[Unary], Unary],
    stream: Callable[[Streaming], Streaming],
    deserializer: Callable[[Any], Any] = lambda d: d,
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with its behaviour wrapped by `unary` (unary responses) or `stream` (streamed
    responses), and its request deserializer passed through `deserializer`."""
    parse = deserializer(handler.request_deserializer)
    kinds = (
        (handler.unary_unary, unary, grpc.unary_unary_rpc_method_handler),
        (handler.stream_unary, unary, grpc.stream_unary_rpc_method_handler),
        (handler.unary_stream, stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_stream, stream, grpc.stream_stream_rpc_method_handler),
    )
    for behavior, wrap, make in kinds:
        if behavior is not None:
            return make(
                wrap(behavior),  # type: ignore[arg-type]
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
    return handler


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps exceptions escaping any servicer method to a rich gRPC status, and requests that are
    not valid protobuf to INVALID_ARGUMENT."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        # The crawlers' Connect stream too: e.g. UNAVAILABLE when the run store is down, not
        # UNKNOWN with the exception's text.
        return rewrap(handler, _wrap_unary, _wrap_stream, tolerant)
