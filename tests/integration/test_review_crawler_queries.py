"""Review: PullRequestService answers malformed-but-parseable input with INVALID_ARGUMENT."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from common.proto.ghpulse.v1 import pull_request_service_pb2 as pb
from tests.integration.test_query_queries import crawler_pg_template, seeded_url
from tests.integration.test_query_server import FakeScheduler, crawler, field_violations, scheduler

__all__ = ["crawler_pg_template", "scheduler", "seeded_url"]

#: Seconds past year 9999: a Timestamp protobuf carries it, a datetime cannot.
TOO_LATE = timestamp_pb2.Timestamp(seconds=10**12)
TOO_EARLY = timestamp_pb2.Timestamp(seconds=-(10**12))


def _token(created_at: str, number: Any) -> str:
    raw = json.dumps([created_at, number]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD = [
    ("ListPullRequests", pb.ListPullRequestsRequest(repository="octo/app", merged_since=TOO_LATE),
     ["merged_since"]),
    ("ListPullRequests", pb.ListPullRequestsRequest(repository="octo/app", merged_until=TOO_EARLY),
     ["merged_until"]),
    ("GetRepositoryStats", pb.GetRepositoryStatsRequest(repository="octo/app", since=TOO_LATE),
     ["since"]),
    ("GetRepositoryStats", pb.GetRepositoryStatsRequest(repository="octo/app", until=TOO_EARLY),
     ["until"]),
    ("ListPullRequests",
     pb.ListPullRequestsRequest(
         repository="octo/app", page_token=_token("2024-03-01T00:00:00+00:00", 10**30)
     ),
     ["page_token"]),
    ("ListPullRequests",
     pb.ListPullRequestsRequest(
         repository="octo/app", page_token=_token("9999-12-31T23:59:59-05:00", 1)
     ),
     ["page_token"]),
    ("ListClosingIssues",
     pb.ListClosingIssuesRequest(repository="octo/app", pull_number=2**40),
     ["pull_number"]),
    ("ListClosingPullRequests",
     pb.ListClosingPullRequestsRequest(repository="octo/app", issue_number=2**40),
     ["issue_number"]),
]  # fmt: skip


@pytest.mark.parametrize(("method", "request_", "fields"), BAD)
async def test_out_of_range_input_is_invalid_argument(
    seeded_url: str,
    scheduler: tuple[FakeScheduler, str],
    method: str,
    request_: Any,
    fields: list[str],
) -> None:
    _fake, address = scheduler
    async with crawler(seeded_url, address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, method)(request_)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == fields
