"""Who a connecting crawler is: its credential's name (a token's, or a client certificate's
subject) plus the id it declares (`GHPULSE_CRAWLER_ID`), so replicas sharing one token stay
distinct and no credential can take another's crawler id; and what its hello may contain."""

from __future__ import annotations

import re

from common.auth.caller import Caller
from common.proto.ghpulse.v1 import worker_service_pb2
from scheduler_service.api.worker_messages import (
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    UNVERSIONED_PROTOCOL,
)
from scheduler_service.errors import IncompatibleProtocol

#: Longest declared crawler id (with the credential's name it fits the 200-character column).
MAX_WORKER_ID = 128
MAX_CREDENTIAL_NAME = 64
MAX_VERSION = 64
MAX_RUN_ID = 128
MAX_IN_FLIGHT = 4096
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")


def worker_identity(caller: Caller, declared: str) -> str:
    """`<credential>/<declared id>`; the declared id alone when authentication is off."""
    if not caller.authenticated:
        return declared
    return f"{caller.name[:MAX_CREDENTIAL_NAME]}/{declared}"


def incompatible_protocol(hello: worker_service_pb2.WorkerHello) -> IncompatibleProtocol | None:
    """The error for a hello of a protocol version this scheduler cannot speak (None: it can; a
    hello without the field speaks the first version)."""
    version = hello.protocol_version or UNVERSIONED_PROTOCOL
    if MIN_PROTOCOL_VERSION <= version <= PROTOCOL_VERSION:
        return None
    return IncompatibleProtocol(version, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION)


def hello_problem(first: worker_service_pb2.ConnectRequest | None) -> str | None:
    """Why the stream's first message is not an acceptable hello (None: it is)."""
    if first is None or first.WhichOneof("message") != "hello":
        return "the first message on the stream must be a hello"
    hello = first.hello
    if not hello.worker_id:
        return "hello.worker_id is required"
    if len(hello.worker_id) > MAX_WORKER_ID or not _PRINTABLE.match(hello.worker_id):
        return f"hello.worker_id must be 1-{MAX_WORKER_ID} printable ASCII characters"
    if len(hello.version) > MAX_VERSION or "\x00" in hello.version:
        return f"hello.version must be at most {MAX_VERSION} characters, without NUL"
    if hello.slots <= 0:
        return "hello.slots must be positive"
    if len(hello.in_flight) > MAX_IN_FLIGHT or any(
        len(ref.run_id) > MAX_RUN_ID or "\x00" in ref.run_id for ref in hello.in_flight
    ):
        return "hello.in_flight holds malformed or too many attempt references"
    return None
