"""Reading the `google.rpc` details (ErrorInfo, BadRequest, RetryInfo) of a failed call."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status


def _status(error: Any) -> Any:
    try:
        return rpc_status.from_call(error)
    except ValueError:  # the status message disagrees with the details' status
        return None


def _describe(detail: Any) -> str | None:
    if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
        info = error_details_pb2.ErrorInfo()
        detail.Unpack(info)
        pairs = " ".join(f"{key}={value}" for key, value in sorted(info.metadata.items()))
        return f"reason={info.reason}" + (f" {pairs}" if pairs else "")
    if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
        bad = error_details_pb2.BadRequest()
        detail.Unpack(bad)
        fields = "; ".join(f"{v.field}: {v.description}" for v in bad.field_violations)
        return f"invalid fields: {fields}"
    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
        retry = error_details_pb2.RetryInfo()
        detail.Unpack(retry)
        return f"retry after {retry.retry_delay.ToTimedelta().total_seconds():g}s"
    return None


def rich_details(error: grpc.RpcError) -> str:
    """The call's details as `reason=X key=value; invalid fields: f: why` ("" if none)."""
    status = _status(error)
    if status is None:
        return ""
    described = (_describe(detail) for detail in status.details)
    return "; ".join(text for text in described if text)
