"""`ghpulse.v1.PullRequestService`: a thin servicer over `Queries`, plus the protobuf conversions.

Requests are validated and converted to domain types here; errors are raised as `common.errors`
kinds and turned into statuses by `common.grpc_errors.ErrorMappingInterceptor` (register the
servicer on a `common.grpc_server.ServerHost`). When a repository's closing links were never
computed, answers come at once with `links_complete=false` and the id of the backfill run started
through the scheduler. For ListClosingPullRequests that status is the issue repository's own;
closing PRs in other repositories appear as far as their repositories' links were computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from common import pb as pb_helpers
from common.errors import FieldViolation, InvalidArgument, require
from common.jobs.targets import repository_violations
from common.proto.ghpulse.v1 import pull_request_service_pb2 as pb
from common.proto.ghpulse.v1 import pull_request_service_pb2_grpc as pb_grpc
from crawler_service.api.backfill import BackfillStarter
from crawler_service.data.cycle_times import SizeClass
from crawler_service.data.models import SOURCE_COMMIT_MESSAGE, SOURCE_DESCRIPTION
from crawler_service.data.queries import (
    LinkRef,
    PageKey,
    PhaseStats,
    PullRequestFilter,
    PullRequestInfo,
    Queries,
    RepositoryRef,
    RepositoryStats,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PullRequestService"].full_name
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: PR and issue numbers are stored as 32-bit integers (PostgreSQL `integer`).
MAX_NUMBER = 2**31 - 1

_STATE_FROM_PB = {
    pb.PULL_REQUEST_STATE_OPEN: "open",
    pb.PULL_REQUEST_STATE_CLOSED: "closed",
    pb.PULL_REQUEST_STATE_MERGED: "merged",
}
_STATE_TO_PB = {state: value for value, state in _STATE_FROM_PB.items()}
_SIZE_TO_PB = {size: pb.SizeClass.Value(f"SIZE_CLASS_{size.value}") for size in SizeClass}
_SIZE_FROM_PB = {value: size for size, value in _SIZE_TO_PB.items()}
_SOURCE_TO_PB = {
    SOURCE_DESCRIPTION: pb.LINK_SOURCE_DESCRIPTION,
    SOURCE_COMMIT_MESSAGE: pb.LINK_SOURCE_COMMIT_MESSAGE,
}

Context = grpc.aio.ServicerContext[Any, Any]


# --- request validation and conversion ---------------------------------------------------------


@dataclass(frozen=True)
class ListArguments:
    repository: str
    filters: PullRequestFilter
    page_size: int
    after: PageKey | None


def _repository_violations(value: str, field: str = "repository") -> list[FieldViolation]:
    return repository_violations(field, value)


def _positive_violations(value: int, field: str) -> list[FieldViolation]:
    if 0 < value <= MAX_NUMBER:
        return []
    return [FieldViolation(field, f"must be a positive number up to {MAX_NUMBER}")]


def _time(message: Any, field: str) -> datetime | None:
    """The timestamp `field` of `message` (None if unset); raises InvalidArgument when the
    Timestamp is outside what a datetime holds (years 1-9999)."""
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    try:
        return pb_helpers.from_timestamp(stamp)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument([FieldViolation(field, "not a valid timestamp")]) from exc


def _window_violations(
    since: datetime | None, until: datetime | None, field: str
) -> list[FieldViolation]:
    if since is not None and until is not None and since >= until:
        return [FieldViolation(field, "must be later than the start of the window")]
    return []


def _page_size(value: int) -> tuple[int, list[FieldViolation]]:
    if value < 0:
        return 0, [FieldViolation("page_size", "must not be negative")]
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE), []


def _enum_filter(
    value: int, known: Mapping[Any, Any], field: str
) -> tuple[Any, list[FieldViolation]]:
    if value == 0:
        return None, []
    if value not in known:
        return None, [FieldViolation(field, f"unknown value {value}")]
    return known[value], []


def list_arguments(request: pb.ListPullRequestsRequest) -> ListArguments:
    """The validated arguments of a ListPullRequests request; raises InvalidArgument."""
    violations = _repository_violations(request.repository)
    state, bad_state = _enum_filter(request.state, _STATE_FROM_PB, "state")
    size, bad_size = _enum_filter(request.size_class, _SIZE_FROM_PB, "size_class")
    since, until = _time(request, "merged_since"), _time(request, "merged_until")
    page_size, bad_page_size = _page_size(request.page_size)
    violations += bad_state + bad_size + bad_page_size
    violations += _window_violations(since, until, "merged_until")
    after = None
    if request.page_token:
        try:
            after = PageKey.decode(request.page_token)
        except InvalidArgument as exc:  # reported together with the other violations
            violations += exc.violations
    require(violations)
    return ListArguments(
        request.repository, PullRequestFilter(state, since, until, size), page_size, after
    )


# --- response conversion -----------------------------------------------------------------------


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _duration(value: timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(value)
    return duration


def _set_optional(message: Any, **values: datetime | timedelta | None) -> None:
    for field, value in values.items():
        if isinstance(value, datetime):
            getattr(message, field).CopyFrom(_timestamp(value))
        elif isinstance(value, timedelta):
            getattr(message, field).CopyFrom(_duration(value))


def pull_request_to_pb(info: PullRequestInfo) -> pb.PullRequest:
    """`info` as a PullRequest message; unset timestamps and durations stay unset."""
    message = pb.PullRequest(
        repository=info.repository,
        number=info.number,
        title=info.title,
        state=_STATE_TO_PB.get(info.state, pb.PULL_REQUEST_STATE_UNSPECIFIED),
        author=info.author,
        draft=info.draft,
        base_ref=info.base_ref,
        url=info.url,
        additions=info.additions,
        deletions=info.deletions,
        changed_files=info.changed_files,
        size_class=_SIZE_TO_PB[info.size_class] if info.size_class else pb.SIZE_CLASS_UNSPECIFIED,
        closing_issues=[
            pb.ClosingIssue(repository=link.repository, number=link.number, source=_source(link))
            for link in info.closing_issues
        ],
    )
    _set_optional(
        message,
        created_at=info.created_at,
        updated_at=info.updated_at,
        closed_at=info.closed_at,
        merged_at=info.merged_at,
        coding_time=info.coding,
        pickup_time=info.pickup,
        review_time=info.review,
        deploy_time=info.deploy,
    )
    return message


def _source(link: LinkRef) -> pb.LinkSource.ValueType:
    return _SOURCE_TO_PB.get(link.source, pb.LINK_SOURCE_UNSPECIFIED)


def _phase_to_pb(stats: PhaseStats) -> pb.PhaseStats:
    message = pb.PhaseStats(count=stats.count)
    _set_optional(message, p50=stats.p50, p75=stats.p75, p90=stats.p90)
    return message


def stats_to_pb(stats: RepositoryStats) -> pb.GetRepositoryStatsResponse:
    """`stats` as a GetRepositoryStats response."""
    return pb.GetRepositoryStatsResponse(
        repository=stats.repository,
        total=stats.total,
        by_state=[
            pb.StateCount(state=_STATE_TO_PB[state], count=count)
            for state, count in stats.by_state.items()
        ],
        by_size_class=[
            pb.SizeClassCount(size_class=_SIZE_TO_PB[size], count=count)
            for size, count in stats.by_size_class.items()
        ],
        coding_time=_phase_to_pb(stats.phases["coding"]),
        pickup_time=_phase_to_pb(stats.phases["pickup"]),
        review_time=_phase_to_pb(stats.phases["review"]),
        deploy_time=_phase_to_pb(stats.phases["deploy"]),
        merged_per_week=[
            pb.WeeklyMergedCount(week_start=_timestamp(week), merged=count)
            for week, count in stats.merged_per_week
        ],
    )


# --- the servicer ------------------------------------------------------------------------------


class PullRequestServicer(pb_grpc.PullRequestServiceServicer):
    """Answers from what is stored; starts link backfills, never waits for them."""

    def __init__(self, queries: Queries, backfill: BackfillStarter) -> None:
        self._queries = queries
        self._backfill = backfill

    async def _links(self, repo: RepositoryRef) -> tuple[bool, str]:
        # The marker decides, not the row count: a repository may legitimately have no links.
        if repo.links_complete:
            return True, ""
        return False, await self._backfill.ensure(repo.full_name)

    async def ListPullRequests(
        self, request: pb.ListPullRequestsRequest, context: Context
    ) -> pb.ListPullRequestsResponse:
        args = list_arguments(request)
        repo = await self._queries.repository(args.repository)
        page = await self._queries.list_pull_requests(
            repo, args.filters, args.page_size, args.after
        )
        complete, run_id = await self._links(repo)
        return pb.ListPullRequestsResponse(
            pull_requests=[pull_request_to_pb(item) for item in page.items],
            next_page_token=page.next_key.encode() if page.next_key else "",
            links_complete=complete,
            backfill_run_id=run_id,
        )

    async def GetRepositoryStats(
        self, request: pb.GetRepositoryStatsRequest, context: Context
    ) -> pb.GetRepositoryStatsResponse:
        since, until = _time(request, "since"), _time(request, "until")
        require(
            _repository_violations(request.repository) + _window_violations(since, until, "until")
        )
        repo = await self._queries.repository(request.repository)
        return stats_to_pb(await self._queries.repository_stats(repo, since, until))

    async def ListClosingIssues(
        self, request: pb.ListClosingIssuesRequest, context: Context
    ) -> pb.ListClosingIssuesResponse:
        require(
            _repository_violations(request.repository)
            + _positive_violations(request.pull_number, "pull_number")
        )
        repo = await self._queries.repository(request.repository)
        links = await self._queries.closing_issues(repo, request.pull_number)
        complete, run_id = await self._links(repo)
        return pb.ListClosingIssuesResponse(
            closing_issues=[
                pb.ClosingIssue(
                    repository=link.repository, number=link.number, source=_source(link)
                )
                for link in links
            ],
            links_complete=complete,
            backfill_run_id=run_id,
        )

    async def ListClosingPullRequests(
        self, request: pb.ListClosingPullRequestsRequest, context: Context
    ) -> pb.ListClosingPullRequestsResponse:
        require(
            _repository_violations(request.repository)
            + _positive_violations(request.issue_number, "issue_number")
        )
        repo = await self._queries.repository(request.repository)
        links = await self._queries.closing_pull_requests(repo, request.issue_number)
        complete, run_id = await self._links(repo)
        return pb.ListClosingPullRequestsResponse(
            pull_requests=[
                pb.ClosingPullRequest(
                    repository=link.repository, number=link.number, source=_source(link)
                )
                for link in links
            ],
            links_complete=complete,
            backfill_run_id=run_id,
        )


def add_to_server(servicer: PullRequestServicer, server: grpc.aio.Server) -> None:
    """Register `servicer` on `server` (use `SERVICE_NAME` for health and reflection)."""
    pb_grpc.add_PullRequestServiceServicer_to_server(servicer, server)
