"""`PullRequestService` on real ports, with a fake `SchedulerService` recording TriggerRun calls."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from common.grpc_server import ServerHost
from common.proto.ghpulse.v1 import pull_request_service_pb2 as pb
from common.proto.ghpulse.v1 import runs_pb2, scheduler_service_pb2, scheduler_service_pb2_grpc
from crawler_service.api.backfill import BackfillStarter
from crawler_service.data.migrations import upgrade
from tests.support.query_data import seed, set_links_marker
from tests.support.query_server import SCHEDULER_SERVICE, FakeSchedulerService, crawler
from tests.support.rpc_errors import field_violations


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/crawler.db"
    upgrade(url)
    seed(url)
    return url


@pytest.fixture
async def scheduler() -> AsyncIterator[tuple[FakeSchedulerService, str]]:
    fake = FakeSchedulerService()  # type: ignore[abstract]  # only TriggerRun is needed

    def register(server: grpc.aio.Server) -> None:
        scheduler_service_pb2_grpc.add_SchedulerServiceServicer_to_server(fake, server)

    async with ServerHost("127.0.0.1:0", [SCHEDULER_SERVICE], register, grace=0.1) as host:
        yield fake, host.address
    fake.release.set()


@dataclass
class Replies:
    complete: list[bool]
    run_ids: list[str]


async def query_everything(stub: Any, count: int) -> Replies:
    calls = []
    for index in range(count):
        which = index % 3
        if which == 0:
            calls.append(stub.ListPullRequests(pb.ListPullRequestsRequest(repository="octo/app")))
        elif which == 1:
            calls.append(
                stub.ListClosingIssues(
                    pb.ListClosingIssuesRequest(repository="Octo/App", pull_number=1)
                )
            )
        else:
            calls.append(
                stub.ListClosingPullRequests(
                    pb.ListClosingPullRequestsRequest(repository="OCTO/APP", issue_number=10)
                )
            )
    replies = await asyncio.gather(*calls)
    return Replies([r.links_complete for r in replies], [r.backfill_run_id for r in replies])


async def test_concurrent_queries_on_two_replicas_share_one_backfill_run(
    db_url: str, scheduler: tuple[FakeSchedulerService, str]
) -> None:
    fake, address = scheduler
    fake.release.clear()
    async with crawler(db_url, address) as replica_a, crawler(db_url, address) as replica_b:
        pending = asyncio.gather(query_everything(replica_a, 12), query_everything(replica_b, 12))
        # Each replica asks once however many queries it is serving; the scheduler joins them.
        await fake.wait_for_calls(2)
        fake.release.set()
        replies_a, replies_b = await pending
        for replies in (replies_a, replies_b):
            assert replies.complete == [False] * 12
            assert set(replies.run_ids) == {"run-1"}
        assert len(fake.calls) == 2
        for call in fake.calls:
            assert call.WhichOneof("job") == "backfill_links"
            assert call.backfill_links.repository == "Octo/App"
            assert call.concurrency_key == "links:octo/app"
            assert call.on_conflict == scheduler_service_pb2.CONFLICT_POLICY_JOIN
            assert call.trigger == runs_pb2.TRIGGER_BACKFILL

        # Once the link step succeeded (marker set), answers are complete and start nothing.
        set_links_marker(db_url, "octo/app")
        replies = await query_everything(replica_a, 6)
        assert (replies.complete, set(replies.run_ids)) == ([True] * 6, {""})
        assert len(fake.calls) == 2


async def test_answers_at_once_when_the_scheduler_hangs(
    db_url: str, scheduler: tuple[FakeSchedulerService, str]
) -> None:
    fake, address = scheduler
    fake.release.clear()  # never answers
    async with crawler(db_url, address, backfill_timeout=0.2) as stub:
        reply = await stub.ListPullRequests(pb.ListPullRequestsRequest(repository="octo/app"))
    assert (reply.links_complete, reply.backfill_run_id) == (False, "")
    assert [pr.number for pr in reply.pull_requests] == [4, 5, 3, 2, 1]
    assert len(fake.calls) == 1


def unused_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def test_answers_when_the_scheduler_is_unreachable(db_url: str) -> None:
    async with crawler(db_url, unused_address(), backfill_timeout=0.5) as stub:
        reply = await stub.ListClosingIssues(
            pb.ListClosingIssuesRequest(repository="octo/app", pull_number=1)
        )
    assert (reply.links_complete, reply.backfill_run_id) == (False, "")
    assert [(i.repository, i.number) for i in reply.closing_issues] == [
        ("Octo/App", 10),
        ("Octo/Lib", 3),
    ]


async def test_a_repository_with_no_links_is_complete_once_marked(
    db_url: str, scheduler: tuple[FakeSchedulerService, str]
) -> None:
    fake, address = scheduler
    async with crawler(db_url, address) as stub:
        reply = await stub.ListClosingPullRequests(
            pb.ListClosingPullRequestsRequest(repository="octo/lib", issue_number=99)
        )
    assert (list(reply.pull_requests), reply.links_complete, reply.backfill_run_id) == (
        [],
        True,
        "",
    )
    assert fake.calls == []


async def test_pages_and_conversion(
    db_url: str, scheduler: tuple[FakeSchedulerService, str]
) -> None:
    _fake, address = scheduler
    async with crawler(db_url, address) as stub:
        numbers, token, pages = [], "", []
        while True:
            reply = await stub.ListPullRequests(
                pb.ListPullRequestsRequest(repository="octo/app", page_size=2, page_token=token)
            )
            pages.append(reply)
            numbers += [pr.number for pr in reply.pull_requests]
            token = reply.next_page_token
            if not token:
                break
        merged = await stub.ListPullRequests(
            pb.ListPullRequestsRequest(
                repository="octo/app",
                state=pb.PULL_REQUEST_STATE_MERGED,
                size_class=pb.SIZE_CLASS_S,
            )
        )
    assert numbers == [4, 5, 3, 2, 1]
    assert len(pages) == 3
    first = pages[-1].pull_requests[0]
    assert (first.number, first.state, first.size_class) == (
        1,
        pb.PULL_REQUEST_STATE_MERGED,
        pb.SIZE_CLASS_S,
    )
    assert first.coding_time.ToTimedelta() == timedelta(hours=1)
    assert first.deploy_time.ToTimedelta() == timedelta(days=1)
    assert first.merged_at.ToJsonString() == "2024-03-05T10:00:00Z"
    assert [(i.repository, i.number, i.source) for i in first.closing_issues] == [
        ("Octo/App", 10, pb.LINK_SOURCE_DESCRIPTION),
        ("Octo/Lib", 3, pb.LINK_SOURCE_COMMIT_MESSAGE),
    ]
    open_pr = pages[1].pull_requests[1]
    assert open_pr.number == 2
    assert not open_pr.HasField("merged_at")
    assert not open_pr.HasField("pickup_time")
    assert [pr.number for pr in merged.pull_requests] == [1]


async def test_repository_stats(db_url: str, scheduler: tuple[FakeSchedulerService, str]) -> None:
    fake, address = scheduler
    async with crawler(db_url, address) as stub:
        reply = await stub.GetRepositoryStats(pb.GetRepositoryStatsRequest(repository="octo/app"))
    assert (reply.repository, reply.total) == ("Octo/App", 5)
    assert {c.state: c.count for c in reply.by_state} == {
        pb.PULL_REQUEST_STATE_OPEN: 1,
        pb.PULL_REQUEST_STATE_CLOSED: 1,
        pb.PULL_REQUEST_STATE_MERGED: 3,
    }
    assert {c.size_class: c.count for c in reply.by_size_class}[pb.SIZE_CLASS_XXL] == 1
    assert reply.pickup_time.count == 3
    assert reply.pickup_time.p50.ToTimedelta() == timedelta(hours=2)
    assert reply.review_time.count == 2
    assert [(w.week_start.ToJsonString(), w.merged) for w in reply.merged_per_week] == [
        ("2024-03-04T00:00:00Z", 2),
        ("2024-03-11T00:00:00Z", 0),
        ("2024-03-18T00:00:00Z", 1),
    ]
    assert fake.calls == []  # stats do not depend on links


BAD_REQUESTS = [
    ("ListPullRequests", pb.ListPullRequestsRequest(repository="octo"), ["repository"]),
    ("ListPullRequests", pb.ListPullRequestsRequest(repository=""), ["repository"]),
    (
        "ListPullRequests",
        pb.ListPullRequestsRequest(repository="octo/app", page_token="garbage!"),
        ["page_token"],
    ),
    (
        "ListPullRequests",
        pb.ListPullRequestsRequest(
            repository="octo/app",
            page_size=-1,
            state=42,  # type: ignore[arg-type]
        ),
        ["state", "page_size"],
    ),
    ("GetRepositoryStats", pb.GetRepositoryStatsRequest(repository="a/b/c"), ["repository"]),
    (
        "ListClosingIssues",
        pb.ListClosingIssuesRequest(repository="octo/app", pull_number=0),
        ["pull_number"],
    ),
    (
        "ListClosingPullRequests",
        pb.ListClosingPullRequestsRequest(repository="bad name/x", issue_number=-3),
        ["repository", "issue_number"],
    ),
]


@pytest.mark.parametrize(("method", "request_", "fields"), BAD_REQUESTS)
async def test_bad_input_is_invalid_argument_with_field_violations(
    db_url: str,
    scheduler: tuple[FakeSchedulerService, str],
    method: str,
    request_: Any,
    fields: list[str],
) -> None:
    _fake, address = scheduler
    async with crawler(db_url, address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, method)(request_)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == fields


#: Seconds past year 9999: a Timestamp protobuf carries it, a datetime cannot.
TOO_LATE = timestamp_pb2.Timestamp(seconds=10**12)
TOO_EARLY = timestamp_pb2.Timestamp(seconds=-(10**12))


def _token(created_at: str, number: Any) -> str:
    raw = json.dumps([created_at, number]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


OUT_OF_RANGE = [
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


@pytest.mark.parametrize(("method", "request_", "fields"), OUT_OF_RANGE)
async def test_out_of_range_input_is_invalid_argument(
    seeded_url: str,
    scheduler: tuple[FakeSchedulerService, str],
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


NOT_FOUND = [
    ("ListPullRequests", pb.ListPullRequestsRequest(repository="octo/never")),
    ("GetRepositoryStats", pb.GetRepositoryStatsRequest(repository="octo/never")),
    ("ListClosingIssues", pb.ListClosingIssuesRequest(repository="octo/never", pull_number=1)),
    ("ListClosingIssues", pb.ListClosingIssuesRequest(repository="octo/app", pull_number=99)),
    (
        "ListClosingPullRequests",
        pb.ListClosingPullRequestsRequest(repository="octo/never", issue_number=1),
    ),
]


@pytest.mark.parametrize(("method", "request_"), NOT_FOUND)
async def test_unknown_repository_or_pull_request_is_not_found(
    db_url: str, scheduler: tuple[FakeSchedulerService, str], method: str, request_: Any
) -> None:
    fake, address = scheduler
    async with crawler(db_url, address) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, method)(request_)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert fake.calls == []


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_backfill_starter_caches_answers_and_failures_for_a_while(
    scheduler: tuple[FakeSchedulerService, str],
) -> None:
    fake, address = scheduler
    clock = FakeMonotonic()
    fake.release.clear()
    async with BackfillStarter(
        address, timeout=0.2, ttl=10.0, failure_ttl=2.0, monotonic=clock
    ) as starter:
        assert await starter.ensure("Octo/App") == ""  # timed out
        assert await starter.ensure("octo/app") == ""  # failure remembered: no new call
        assert len(fake.calls) == 1

        fake.release.set()
        clock.now += 2.5
        assert await starter.ensure("octo/app") == "run-1"
        clock.now += 9.0
        assert await starter.ensure("octo/app") == "run-1"  # still cached
        assert len(fake.calls) == 2

        clock.now += 1.5
        assert await starter.ensure("octo/app") == "run-1"  # asked again, joined
        assert len(fake.calls) == 3
        assert await starter.ensure("octo/lib") == "run-2"  # another key, another run
