"""Reading the rich error details (`google.rpc` BadRequest, ErrorInfo, RetryInfo) of a failed
gRPC call."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


def details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    """The google.rpc details of a rich error status, by type name."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: dict[str, object] = {}
    for detail in status.details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.DESCRIPTOR.name] = message
    return found


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations of `error`: field -> description (empty if none)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    return {}


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The `google.rpc.Status` carried in the trailing metadata (fails the test if absent)."""
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError("no rich status details")


def field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named by every BadRequest detail of `error`, in order."""
    fields = []
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields += [violation.field for violation in bad_request.field_violations]
    return fields
