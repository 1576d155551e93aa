"""The one place where exceptions become gRPC status codes with `google.rpc` details."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    GhpulseError,
    InvalidArgument,
    NotFound,
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
]


def status_code(exc: GhpulseError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(exc: GhpulseError) -> grpc.Status:
    """The rich gRPC status for `exc`: code, message, ErrorInfo and kind-specific details."""
    code = status_code(exc)
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=exc.reason,
                domain=DOMAIN,
                metadata={k: str(v) for k, v in exc.metadata.items()},
            )
        )
    ]
    if isinstance(exc, InvalidArgument):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in exc.violations
        ]
        details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
    if isinstance(exc, Unavailable) and exc.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(exc.retry_after)
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=code.value[0], message=exc.message, details=details)
    return rpc_status.to_status(status)


def unexpected_status(exc: BaseException) -> grpc.Status:
    """An INTERNAL status for a bug; the exception itself is logged, not sent."""
    log.exception("rpc.unexpected_error", error=repr(exc))
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message="internal error (see server logs)")
    )


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    status = to_status(exc) if isinstance(exc, GhpulseError) else unexpected_status(exc)
    await context.abort_with_status(status)  # type: ignore[attr-defined]


def _wrap_unary(
    behavior: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]],
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
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


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps exceptions escaping any servicer method to a rich gRPC status."""

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
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            # The crawlers' Connect stream: e.g. UNAVAILABLE when the run store is down, not
            # UNKNOWN with the exception's text.
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
