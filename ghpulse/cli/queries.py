"""`ghpulse prs owner/repo`, `ghpulse stats owner/repo`: PullRequestService (on the crawler)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from common.client.aio import GhpulseClient
from common.proto.ghpulse.v1 import pull_request_service_pb2 as ppb
from ghpulse.cli.output import (
    CRAWLER_DEFAULT,
    CrawlerOpt,
    OutputFormat,
    OutputOpt,
    console,
    print_json,
    run,
)


class PrState(StrEnum):
    ALL = "all"
    OPEN = "open"
    CLOSED = "closed"
    MERGED = "merged"


def prs(
    repository: Annotated[str, typer.Argument(help="owner/repo")],
    state: Annotated[PrState, typer.Option(help="Only PRs in this state.")] = PrState.ALL,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Page size.")] = 50,
    page_token: Annotated[str, typer.Option(help="From a previous page.")] = "",
    crawler: CrawlerOpt = CRAWLER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """List a repository's pull requests with their size class and cycle-time phases."""
    from ghpulse.cli.tables import pull_requests_table

    state_value = (
        ppb.PULL_REQUEST_STATE_UNSPECIFIED
        if state is PrState.ALL
        else ppb.PullRequestState.Value(f"PULL_REQUEST_STATE_{state.name}")
    )

    async def fetch() -> ppb.ListPullRequestsResponse:
        async with GhpulseClient(crawler=crawler) as client:
            return await client.list_pull_requests(
                repository, state=state_value, page_size=limit, page_token=page_token
            )

    response = run(fetch())
    if output is OutputFormat.JSON:
        print_json(response)
        return
    out = console()
    out.print(pull_requests_table(response.pull_requests))
    if response.next_page_token:
        out.print(f"more: --page-token {response.next_page_token}")
    if not response.links_complete and response.backfill_run_id:
        out.print(f"closing links are being computed by run {response.backfill_run_id}")


def stats(
    repository: Annotated[str, typer.Argument(help="owner/repo")],
    crawler: CrawlerOpt = CRAWLER_DEFAULT,
    output: OutputOpt = OutputFormat.TABLE,
) -> None:
    """A repository's PR counts, size classes and cycle-time percentiles (p50/p75/p90)."""
    from ghpulse.cli.tables import phase_table, stats_table

    async def fetch() -> ppb.GetRepositoryStatsResponse:
        async with GhpulseClient(crawler=crawler) as client:
            return await client.repository_stats(repository)

    response = run(fetch())
    if output is OutputFormat.JSON:
        print_json(response)
        return
    out = console()
    out.print(stats_table([response]))
    out.print(phase_table(response))


def register(app: typer.Typer) -> None:
    app.command()(prs)
    app.command()(stats)
