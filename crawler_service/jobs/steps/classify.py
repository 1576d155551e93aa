"""The `classify` step: each PR's size class and cycle times, from the typed tables.

Every PR of a repository is recomputed (not only the changed ones): a new release changes the deploy
time of PRs merged before it.

Coding time starts at the earliest commit *author* date among the PR's commits as the PR commits
endpoint lists them, and GitHub's endpoint returns at most 250 commits. For a PR with more commits
the earliest ones can be missing, so its coding time may be understated, never overstated.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from crawler_service.data.cycle_times import CycleTimes, ReviewInfo, cycle_times, size_class
from crawler_service.data.models import Commit, PullRequest, Release, Review
from crawler_service.data.records import Row
from crawler_service.data.store import CrawlerStore
from crawler_service.jobs.registry import Output, StepContext
from crawler_service.jobs.steps import each_repository


def _seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


def classification_row(additions: int, deletions: int, times: CycleTimes) -> Row:
    """The `pull_requests` columns the classify step owns for one PR: size class and cycle times."""
    return {
        "size_class": size_class(additions, deletions).value,
        "coding_seconds": _seconds(times.coding),
        "pickup_seconds": _seconds(times.pickup),
        "review_seconds": _seconds(times.review),
        "deploy_seconds": _seconds(times.deploy),
    }


@dataclass
class ClassifyStep:
    """See the module docstring."""

    store: CrawlerStore
    name: str = "classify"

    async def run(self, ctx: StepContext) -> Output:
        counts = await each_repository(ctx, self.store, self._repository, "classified")
        return {"prs_classified": sum(counts)}

    async def _repository(self, key: str) -> int:
        pulls = await self.store.select(
            sa.select(
                PullRequest.number,
                PullRequest.additions,
                PullRequest.deletions,
                PullRequest.created_at,
                PullRequest.merged_at,
                PullRequest.author,
            ).where(PullRequest.repository == key)
        )
        commits = await self._commit_dates(key)
        reviews = await self._reviews(key)
        releases = await self._release_dates(key)
        rows = {
            pr.number: classification_row(
                pr.additions,
                pr.deletions,
                cycle_times(
                    created_at=pr.created_at,
                    merged_at=pr.merged_at,
                    author=pr.author,
                    commit_dates=commits.get(pr.number, []),
                    reviews=reviews.get(pr.number, []),
                    release_dates=releases,
                ),
            )
            for pr in pulls
        }
        await self.store.save_classification(key, rows)
        return len(rows)

    async def _commit_dates(self, key: str) -> dict[int, list[datetime]]:
        rows = await self.store.select(
            sa.select(Commit.pr_number, Commit.authored_at).where(
                Commit.repository == key, Commit.authored_at.is_not(None)
            )
        )
        return _group(rows)

    async def _reviews(self, key: str) -> dict[int, list[ReviewInfo]]:
        rows = await self.store.select(
            sa.select(
                Review.pr_number, Review.author, Review.author_is_bot, Review.submitted_at
            ).where(Review.repository == key)
        )
        return _group(
            (r.pr_number, ReviewInfo(r.author, r.author_is_bot, r.submitted_at)) for r in rows
        )

    async def _release_dates(self, key: str) -> list[datetime]:
        rows = await self.store.select(
            sa.select(Release.published_at).where(
                Release.repository == key, Release.published_at.is_not(None)
            )
        )
        return [published for (published,) in rows if published is not None]


def _group(rows: Any) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for number, value in rows:
        grouped[number].append(value)
    return grouped
