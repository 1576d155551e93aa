"""Pull request cycle times: size classes, cycle-time phases and percentiles. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

_ZERO = timedelta(0)


class SizeClass(StrEnum):
    """The Kubernetes size labels, by lines changed (additions + deletions)."""

    XS = "XS"
    S = "S"
    M = "M"
    L = "L"
    XL = "XL"
    XXL = "XXL"


# Exclusive upper bounds, smallest first; anything at or above the last bound is XXL.
_SIZE_BOUNDS = (
    (10, SizeClass.XS),
    (30, SizeClass.S),
    (100, SizeClass.M),
    (500, SizeClass.L),
    (1000, SizeClass.XL),
)


def size_class(additions: int, deletions: int) -> SizeClass:
    """XS < 10 <= S < 30 <= M < 100 <= L < 500 <= XL < 1000 <= XXL lines changed."""
    lines = additions + deletions
    for bound, label in _SIZE_BOUNDS:
        if lines < bound:
            return label
    return SizeClass.XXL


@dataclass(frozen=True)
class ReviewInfo:
    """What cycle times need of a review. `submitted_at` is None for a pending review."""

    author: str | None
    author_is_bot: bool
    submitted_at: datetime | None


@dataclass(frozen=True)
class CycleTimes:
    """The phases of a pull request's life; None where a phase does not apply (yet)."""

    #: Earliest commit (author date) -> PR created; zero when the commits are newer than the PR.
    coding: timedelta | None
    #: PR created -> first review by someone else (not a bot), or -> merge without such a review.
    pickup: timedelta | None
    #: That first review -> merged.
    review: timedelta | None
    #: Merged -> first release published at or after the merge.
    deploy: timedelta | None


def cycle_times(
    *,
    created_at: datetime,
    merged_at: datetime | None,
    author: str | None,
    commit_dates: Sequence[datetime],
    reviews: Sequence[ReviewInfo],
    release_dates: Sequence[datetime],
) -> CycleTimes:
    """The cycle-time phases of one pull request.

    `commit_dates` are the commits' *author* dates (when the work was done, not when it was
    rebased). GitHub's PR-commits endpoint lists at most 250 commits (its documented cap; the full
    list needs the repository commits endpoint). For a PR with more than 250 commits the earliest
    commits may be missing, so its coding time may be understated (never overstated).

    A review counts for pickup when it was submitted by someone other than the PR's author (logins
    compared case-insensitively), not by a bot, and - for a merged PR - no later than the merge:
    a review left after merging did not pick the PR up. `release_dates` are publication times of
    published (non-draft) releases.
    """
    first_review = _first_review(reviews, author, merged_at)
    return CycleTimes(
        coding=_coding(commit_dates, created_at),
        pickup=_pickup(created_at, first_review, merged_at),
        review=_between(first_review, merged_at),
        deploy=_deploy(merged_at, release_dates),
    )


def _coding(commit_dates: Sequence[datetime], created_at: datetime) -> timedelta | None:
    if not commit_dates:
        return None
    return max(created_at - min(commit_dates), _ZERO)


def _first_review(
    reviews: Sequence[ReviewInfo], author: str | None, merged_at: datetime | None
) -> datetime | None:
    pr_author = (author or "").lower()
    times = [
        review.submitted_at
        for review in reviews
        if review.submitted_at is not None
        and not review.author_is_bot
        and (review.author or "").lower() != pr_author
        and (merged_at is None or review.submitted_at <= merged_at)
    ]
    return min(times, default=None)


def _pickup(
    created_at: datetime, first_review: datetime | None, merged_at: datetime | None
) -> timedelta | None:
    end = first_review or merged_at
    return _between(created_at, end)


def _deploy(merged_at: datetime | None, release_dates: Sequence[datetime]) -> timedelta | None:
    if merged_at is None:
        return None
    first_release = min((when for when in release_dates if when >= merged_at), default=None)
    return _between(merged_at, first_release)


def _between(start: datetime | None, end: datetime | None) -> timedelta | None:
    # Clock skew between GitHub's records can put an end a moment before its start.
    if start is None or end is None:
        return None
    return max(end - start, _ZERO)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) of `values` by linear interpolation between closest ranks.

    This is the "inclusive" definition (numpy's default `linear` method, Excel's PERCENTILE.INC):
    rank `(n - 1) * q / 100` in the sorted values, interpolated between its neighbours. Raises
    ValueError for no values or `q` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
