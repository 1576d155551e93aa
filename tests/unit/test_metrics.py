from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crawler_service.data.cycle_times import (
    CycleTimes,
    ReviewInfo,
    SizeClass,
    cycle_times,
    percentile,
    size_class,
)


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("additions", "deletions", "expected"),
    [
        (0, 0, SizeClass.XS),
        (5, 4, SizeClass.XS),
        (5, 5, SizeClass.S),
        (29, 0, SizeClass.S),
        (0, 30, SizeClass.M),
        (60, 39, SizeClass.M),
        (100, 0, SizeClass.L),
        (499, 0, SizeClass.L),
        (250, 250, SizeClass.XL),
        (999, 0, SizeClass.XL),
        (1000, 0, SizeClass.XXL),
        (40_000, 12_000, SizeClass.XXL),
    ],
)
def test_size_class_bounds(additions: int, deletions: int, expected: SizeClass) -> None:
    assert size_class(additions, deletions) is expected


def test_size_class_values_are_the_labels() -> None:
    assert [str(label) for label in SizeClass] == ["XS", "S", "M", "L", "XL", "XXL"]


def review(author: str | None, when: datetime | None, *, bot: bool = False) -> ReviewInfo:
    return ReviewInfo(author=author, author_is_bot=bot, submitted_at=when)


def test_merged_pr_with_all_phases() -> None:
    # Commits from Mar 1 09:00; opened Mar 2 09:00; alice reviews Mar 2 15:30; merged Mar 3 10:00;
    # releases Mar 1 (before the merge, ignored), Mar 5 12:00 and Mar 9.
    times = cycle_times(
        created_at=at(2, 9),
        merged_at=at(3, 10),
        author="bob",
        commit_dates=[at(1, 12), at(1, 9), at(2, 8)],
        reviews=[review("alice", at(2, 15, 30)), review("carol", at(2, 18))],
        release_dates=[at(9), at(1), at(5, 12)],
    )
    assert times == CycleTimes(
        coding=timedelta(hours=24),
        pickup=timedelta(hours=6, minutes=30),
        review=timedelta(hours=18, minutes=30),
        deploy=timedelta(days=2, hours=2),
    )


def test_own_bot_pending_and_post_merge_reviews_do_not_pick_up() -> None:
    times = cycle_times(
        created_at=at(2),
        merged_at=at(4),
        author="Bob",
        commit_dates=[at(2)],
        reviews=[
            review("bob", at(2, 1)),  # the author, in another case
            review("dependabot[bot]", at(2, 2), bot=True),
            review("alice", None),  # pending: never submitted
            review("carol", at(5)),  # after the merge
        ],
        release_dates=[],
    )
    # No review counts, so pickup runs to the merge and there is no review phase.
    assert times == CycleTimes(
        coding=timedelta(0), pickup=timedelta(days=2), review=None, deploy=None
    )


def test_commits_newer_than_the_pr_give_zero_coding_time() -> None:
    times = cycle_times(
        created_at=at(2),
        merged_at=None,
        author="bob",
        commit_dates=[at(3), at(4)],
        reviews=[],
        release_dates=[],
    )
    assert times.coding == timedelta(0)


def test_open_pr_without_reviews_or_commits() -> None:
    times = cycle_times(
        created_at=at(2),
        merged_at=None,
        author="bob",
        commit_dates=[],
        reviews=[],
        release_dates=[at(3)],
    )
    assert times == CycleTimes(coding=None, pickup=None, review=None, deploy=None)


def test_open_pr_with_a_review_has_pickup_only() -> None:
    times = cycle_times(
        created_at=at(2),
        merged_at=None,
        author=None,
        commit_dates=[at(1)],
        reviews=[review("alice", at(3))],
        release_dates=[],
    )
    assert times == CycleTimes(
        coding=timedelta(days=1), pickup=timedelta(days=1), review=None, deploy=None
    )


def test_release_exactly_at_the_merge_counts() -> None:
    times = cycle_times(
        created_at=at(2),
        merged_at=at(3),
        author="bob",
        commit_dates=[],
        reviews=[],
        release_dates=[at(3)],
    )
    assert times.deploy == timedelta(0)


def test_review_at_the_merge_counts() -> None:
    times = cycle_times(
        created_at=at(2),
        merged_at=at(3),
        author="bob",
        commit_dates=[],
        reviews=[review("alice", at(3))],
        release_dates=[],
    )
    assert (times.pickup, times.review) == (timedelta(days=1), timedelta(0))


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 50, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        # rank = 9 * 0.9 = 8.1 -> 9 + 0.1 * (10 - 9)
        ([float(v) for v in range(1, 11)], 90, 9.1),
        # rank = 4 * 0.75 = 3 exactly
        ([10.0, 20.0, 30.0, 40.0, 50.0], 75, 40.0),
    ],
)
def test_percentile_is_linear_between_closest_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_bad_input(values: list[float], q: float) -> None:
    with pytest.raises(ValueError, match=r"percentile|within"):
        percentile(values, q)
