"""`crawler_service.data.queries` against real, migrated databases (SQLite file, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from common.db import create_async
from common.errors import InvalidArgument, NotFound
from crawler_service.data.cycle_times import SizeClass
from crawler_service.data.queries import (
    LinkRef,
    PageKey,
    PhaseStats,
    PullRequestFilter,
    Queries,
    weekly_counts,
)
from tests.support.query_data import at, set_links_marker


@pytest.fixture
async def queries(seeded_url: str) -> AsyncIterator[Queries]:
    engine = create_async(seeded_url)
    yield Queries(engine)
    await engine.dispose()


async def numbers(queries: Queries, filters: PullRequestFilter, page_size: int = 50) -> list[int]:
    repo = await queries.repository("octo/app")
    found: list[int] = []
    after = None
    while True:
        page = await queries.list_pull_requests(repo, filters, page_size, after)
        found += [item.number for item in page.items]
        if page.next_key is None:
            return found
        after = PageKey.decode(page.next_key.encode())


async def test_repository_is_found_in_any_case(queries: Queries) -> None:
    repo = await queries.repository("OCTO/app")
    assert (repo.key, repo.full_name, repo.links_complete) == ("octo/app", "Octo/App", False)
    assert (await queries.repository("octo/lib")).links_complete is True


async def test_unknown_repository_is_not_found(queries: Queries) -> None:
    with pytest.raises(NotFound):
        await queries.repository("octo/never")


@pytest.mark.parametrize("page_size", [1, 2, 3, 4, 5, 50])
async def test_pages_follow_creation_newest_first(queries: Queries, page_size: int) -> None:
    # #2 and #3 share created_at: the number breaks the tie, also across a page boundary.
    assert await numbers(queries, PullRequestFilter(), page_size) == [4, 5, 3, 2, 1]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (PullRequestFilter(state="merged"), [4, 5, 1]),
        (PullRequestFilter(state="open"), [2]),
        (PullRequestFilter(merged_since=at(10, 23)), [4, 5]),
        (PullRequestFilter(merged_until=at(10, 23)), [1]),
        (PullRequestFilter(merged_since=at(6), merged_until=at(20)), [5]),
        (PullRequestFilter(size_class=SizeClass.XS), [2]),
        (PullRequestFilter(state="merged", size_class=SizeClass.XXL), [4]),
        (PullRequestFilter(size_class=SizeClass.XL), []),
    ],
)
async def test_filters(queries: Queries, filters: PullRequestFilter, expected: list[int]) -> None:
    assert await numbers(queries, filters, page_size=2) == expected


async def test_items_carry_metrics_and_closing_issues(queries: Queries) -> None:
    repo = await queries.repository("octo/app")
    page = await queries.list_pull_requests(repo, PullRequestFilter(), 50)
    first = next(item for item in page.items if item.number == 1)
    assert first.repository == "Octo/App"
    assert first.size_class is SizeClass.S
    assert (first.coding, first.pickup, first.review, first.deploy) == (
        timedelta(hours=1),
        timedelta(hours=2),
        timedelta(minutes=30),
        timedelta(days=1),
    )
    assert first.created_at == at(4, 10)
    assert first.closing_issues == (
        LinkRef("Octo/App", 10, "description"),
        LinkRef("Octo/Lib", 3, "commit_message"),
    )
    unclassified = next(item for item in page.items if item.number == 5)
    assert (unclassified.size_class, unclassified.coding, unclassified.closing_issues) == (
        None,
        None,
        (),
    )


async def test_closing_issues_of_a_pull_request(queries: Queries) -> None:
    repo = await queries.repository("octo/app")
    assert await queries.closing_issues(repo, 4) == [LinkRef("other/thing", 2, "description")]
    assert await queries.closing_issues(repo, 2) == []
    with pytest.raises(NotFound):
        await queries.closing_issues(repo, 99)


async def test_closing_pull_requests_of_an_issue_span_repositories(queries: Queries) -> None:
    repo = await queries.repository("octo/app")
    assert await queries.closing_pull_requests(repo, 10) == [
        LinkRef("Octo/App", 1, "description"),
        LinkRef("Octo/Lib", 7, "description"),
    ]
    assert await queries.closing_pull_requests(repo, 11) == []


async def test_repository_stats(queries: Queries) -> None:
    stats = await queries.repository_stats(await queries.repository("octo/app"), None, None)
    assert (stats.repository, stats.total) == ("Octo/App", 5)
    assert stats.by_state == {"open": 1, "closed": 1, "merged": 3}
    assert stats.by_size_class == {
        SizeClass.XS: 1, SizeClass.S: 1, SizeClass.M: 0,
        SizeClass.L: 1, SizeClass.XL: 0, SizeClass.XXL: 1,
    }  # fmt: skip
    # coding [0, 100, 3600]: p50 100, p75 100 + 0.5 * 3500, p90 100 + 0.8 * 3500
    assert stats.phases["coding"] == PhaseStats(
        3, timedelta(seconds=100), timedelta(seconds=1850), timedelta(seconds=2900)
    )
    # pickup [3600, 7200, 86400]: p75 7200 + 0.5 * 79200, p90 7200 + 0.8 * 79200
    assert stats.phases["pickup"] == PhaseStats(
        3, timedelta(seconds=7200), timedelta(seconds=46800), timedelta(seconds=70560)
    )
    assert stats.phases["deploy"] == PhaseStats(1, timedelta(days=1), timedelta(days=1),
                                                timedelta(days=1))  # fmt: skip
    # #1 (Tue) and #5 (Sunday 23:00) in the week of Mon Mar 4; none in the next; #4 on Mar 20.
    assert stats.merged_per_week == ((at(4), 2), (at(11), 0), (at(18), 1))


async def test_repository_stats_window_is_on_creation(queries: Queries) -> None:
    repo = await queries.repository("octo/app")
    stats = await queries.repository_stats(repo, at(6), at(9))
    assert stats.total == 3  # #2, #3 and #5
    assert stats.by_state == {"open": 1, "closed": 1, "merged": 1}
    assert stats.phases["review"] == PhaseStats(0, None, None, None)
    assert stats.merged_per_week == ((at(4), 1),)


async def test_marker_decides_completeness(queries: Queries, seeded_url: str) -> None:
    set_links_marker(seeded_url, "octo/app")
    assert (await queries.repository("octo/app")).links_complete is True


@pytest.mark.parametrize("token", ["", "!!", "bm90IGpzb24", "WzEsMl0", "WyIyMDI0LTAxLTAxIiwxXQ"])
def test_bad_page_tokens_name_the_field(token: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        PageKey.decode(token)
    assert [v.field for v in raised.value.violations] == ["page_token"]


def test_page_key_round_trips() -> None:
    key = PageKey(datetime(2024, 3, 4, 10, 0, 0, 123456, tzinfo=UTC), 42)
    assert PageKey.decode(key.encode()) == key


def test_weekly_counts_empty() -> None:
    assert weekly_counts([]) == ()
