"""What the client commands share: address and output options, JSON output, error lines, exit codes.

Exit codes of every client command:

| code | meaning |
|---|---|
| 0 | done (for `watch`/`--watch`/`demo`: the run succeeded) |
| 1 | a gRPC call failed (the status is printed on stderr) or the scheduler stayed unreachable |
| 2 | bad usage (unknown option, malformed argument) |
| 3 | the run failed |
| 4 | the run was cancelled |
| 130 | interrupted (Ctrl-C) |
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TypeVar

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console

from common.client.config import (
    CRAWLER_ADDR_ENV,
    DEFAULT_CRAWLER_ADDR,
    DEFAULT_SCHEDULER_ADDR,
    SCHEDULER_ADDR_ENV,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3
EXIT_RUN_CANCELLED = 4
EXIT_INTERRUPTED = 130

_T = TypeVar("_T")


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


SchedulerOpt = Annotated[
    str,
    typer.Option("--scheduler", envvar=SCHEDULER_ADDR_ENV, help="Scheduler address (host:port)."),
]
CrawlerOpt = Annotated[
    str,
    typer.Option("--crawler", envvar=CRAWLER_ADDR_ENV, help="Crawler address (host:port)."),
]
OutputOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--output", "-o", help="table: for people; json: protobuf JSON, as grpcurl prints it."
    ),
]
SCHEDULER_DEFAULT = DEFAULT_SCHEDULER_ADDR
CRAWLER_DEFAULT = DEFAULT_CRAWLER_ADDR


def to_json(message: Message) -> str:
    """Protobuf's JSON mapping as grpcurl prints it: proto field names (the mapping's
    `preserving_proto_field_name` option), enum names, RFC 3339 times, 64-bit ints as strings."""
    return json_format.MessageToJson(message, indent=2, preserving_proto_field_name=True)


def print_json(message: Message) -> None:
    typer.echo(to_json(message))


def describe_rpc_error(error: grpc.aio.AioRpcError | grpc.RpcError) -> str:
    """One line: status code, message, and the ErrorInfo / BadRequest details if present."""
    code = error.code()
    line = f"error: {code.name}: {error.details()}"
    details = rich_details(error)
    return f"{line} ({details})" if details else line


def _describe_detail(detail: Any) -> str | None:
    from google.rpc import error_details_pb2

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
    """The call's `google.rpc` details (ErrorInfo, BadRequest, RetryInfo) as
    `reason=X key=value; invalid fields: f: why` ("" if none)."""
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # the status message disagrees with the details' status
        return ""
    if status is None:
        return ""
    described = (_describe_detail(detail) for detail in status.details)
    return "; ".join(text for text in described if text)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a command's coroutine; gRPC errors become one stderr line and exit code 1."""
    from common.client.watch import WatchGaveUp

    try:
        return asyncio.run(coro)
    except grpc.RpcError as error:
        fail(describe_rpc_error(error))
    except WatchGaveUp as error:
        fail(f"error: UNAVAILABLE: {error}")
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)


def human_duration(value: timedelta | None) -> str:
    """`3d4h`, `2h05m`, `4m10s`, `12s`; `-` when absent."""
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def enum_label(name: str, prefix: str) -> str:
    """`RUN_STATE_SUCCEEDED` -> `succeeded`."""
    return name.removeprefix(prefix).lower()


def console() -> Console:
    """A rich console for stdout: the terminal's width, or 160 columns when piped (so tables are
    not squeezed to 80 columns in logs and files)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)
