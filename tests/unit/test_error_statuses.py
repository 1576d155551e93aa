"""`common.grpc_errors.status_of`: the one mapping of an RPC's exception to its status."""

from __future__ import annotations

import sqlite3

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from sqlalchemy.exc import OperationalError

from common.errors import NotFound
from common.grpc_errors import status_of


def _decoded(status: grpc.Status) -> status_pb2.Status:
    metadata = dict(status.trailing_metadata)  # type: ignore[attr-defined]
    return status_pb2.Status.FromString(metadata["grpc-status-details-bin"])


def test_a_database_that_does_not_answer_is_unavailable_with_a_retry_delay() -> None:
    locked = OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
    decoded = _decoded(status_of(locked))
    assert decoded.code == code_pb2.UNAVAILABLE
    # The driver's text stays in the server log: the client is told to retry, not why.
    assert "locked" not in decoded.message
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in decoded.details)
    assert retry.retry_delay.seconds == 1


def test_an_error_of_ours_keeps_its_status_and_a_bug_is_internal() -> None:
    assert _decoded(status_of(NotFound("run r1 not found"))).code == code_pb2.NOT_FOUND
    bug = _decoded(status_of(ValueError("secret detail")))
    assert bug.code == code_pb2.INTERNAL
    assert "secret" not in bug.message
