"""Who a connecting crawler is: its credential's name (a token's, or a client certificate's
subject) plus the id it declares (`GHPULSE_CRAWLER_ID`), so replicas sharing one token stay
distinct and no credential can take another's crawler id; and what its hello may contain."""

from __future__ import annotations

import re

from common.auth.caller import Caller
from common.proto.ghpulse.v1 import worker_service_pb2
from scheduler_service.api.worker_messages import PROTOCOL_VERSION

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


def hello_problem(first: worker_service_pb2.ConnectRequest | None) -> str | None:
    """Why the stream's first message is not an acceptable hello (None: it is)."""
    if first is None or first.WhichOneof("message") != "hello":
        return "the first message on the stream must be a hello"
    hello = first.hello
    if hello.protocol_version != PROTOCOL_VERSION:
        return f"unsupported protocol version {hello.protocol_version}"
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
