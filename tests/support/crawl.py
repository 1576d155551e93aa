"""Shared pieces of the crawl tests: a hand-checked dataset, a GitHub client for the fake, a step
runner, a snapshot of what a crawl stored."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from common.jobs import JobSpec
from crawler_service.data.models import ClosingLink, Commit, PullRequest, Release, Review
from crawler_service.data.store import CrawlerStore
from crawler_service.errors import HandBack
from crawler_service.github.budget import TokenBudget
from crawler_service.github.client import GitHubClient
from crawler_service.github.graphql import GraphQLClient
from crawler_service.jobs.pipeline import build_registry
from crawler_service.jobs.registry import JobRegistry, Output, Step, StepContext
from crawler_service.jobs.steps.fetch import FetchStep
from crawler_service.settings import CrawlerSettings
from ghpulse.testing.fake_github import Dataset, FakeGitHub, shapes

ORG = "acme"
WIDGETS = "acme/widgets"
GADGETS = "acme/gadgets"
ARCHIVED = "acme/old"
FILLERS = 130  # widgets PRs beyond the hand-checked ones: the list has two pages


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _commit(repo: str, n: int, i: int, date: str, message: str) -> dict[str, Any]:
    return shapes.commit(
        repo,
        shapes.sha(repo, n, i),
        message=message,
        author_name="Alice",
        author_email="alice@example.com",
        author_date=date,
        author=shapes.user("alice"),
    )


def _hand_checked(ds: Dataset) -> None:
    alice, bob, bot = (
        shapes.user("alice"),
        shapes.user("bob"),
        shapes.user("dependabot[bot]", kind="Bot"),
    )
    pr1 = ds.add_pull(
        WIDGETS,
        number=1,
        author="alice",
        title="Add widgets",
        body="Fixes #10\n\n`closes #11`\n<!-- resolves #13 -->",
        created_at="2024-03-01T10:00:00Z",
        updated_at="2024-03-02T10:00:00Z",
        state="closed",
        closed_at="2024-03-02T10:00:00Z",
        merged_at="2024-03-02T10:00:00Z",
        additions=5,
        deletions=4,
        changed_files=2,
        commits=[_commit(WIDGETS, 1, 0, "2024-02-29T10:00:00Z", "Fix #12")],
    )
    ds.repo(WIDGETS).reviews[1] = [  # type: ignore[union-attr]
        shapes.review(pr1, reviewer=alice, state="COMMENTED", submitted_at="2024-03-01T11:00:00Z"),
        shapes.review(pr1, reviewer=bot, state="APPROVED", submitted_at="2024-03-01T10:30:00Z"),
        shapes.review(pr1, reviewer=bob, state="APPROVED", submitted_at="2024-03-01T14:00:00Z"),
    ]
    ds.add_pull(
        WIDGETS,
        number=2,
        author="bob",
        title="Big change",
        body="closes acme/gadgets#3, #4",
        created_at="2024-03-05T00:00:00Z",
        updated_at="2024-03-05T06:00:00Z",
        state="closed",
        closed_at="2024-03-05T06:00:00Z",
        merged_at="2024-03-05T06:00:00Z",
        additions=600,
        deletions=500,
        commits=[_commit(WIDGETS, 2, 0, "2024-03-05T01:00:00Z", "work")],
    )
    ds.add_pull(
        WIDGETS,
        number=3,
        author="carol",
        title="On develop",
        body="fixes #20",
        created_at="2024-03-06T00:00:00Z",
        updated_at="2024-03-06T00:00:00Z",
        base_ref="develop",
        additions=20,
        deletions=10,
    )
    ghost = ds.add_pull(
        WIDGETS,
        number=4,
        title="Abandoned",
        body=None,
        created_at="2024-03-07T00:00:00Z",
        updated_at="2024-03-07T00:00:00Z",
        state="closed",
        closed_at="2024-03-07T00:00:00Z",
    )
    ghost["user"] = None  # a deleted account, as real GitHub data has
    repo = ds.repo(WIDGETS).repository  # type: ignore[union-attr]
    ds.repo(WIDGETS).releases = [  # type: ignore[union-attr]
        shapes.release(repo, "v3", created_at="2024-03-09T00:00:00Z", published_at=None,
                       author=alice, draft=True),
        shapes.release(repo, "v2", created_at="2024-03-06T00:00:00Z",
                       published_at="2024-03-06T00:00:00Z", author=alice),
        shapes.release(repo, "v1", created_at="2024-03-03T10:00:00Z",
                       published_at="2024-03-03T10:00:00Z", author=alice),
    ]  # fmt: skip


def make_dataset(fillers: int = FILLERS) -> Dataset:
    """acme/widgets (4 hand-checked PRs + `fillers`), acme/gadgets (5 PRs), acme/old (archived)."""
    ds = Dataset()
    created = "2023-01-01T00:00:00Z"
    ds.add_repository(shapes.repository(ORG, "widgets", created_at=created))
    ds.add_repository(shapes.repository(ORG, "gadgets", created_at=created))
    ds.add_repository(shapes.repository(ORG, "old", created_at=created, archived=True))
    _hand_checked(ds)
    start = ts("2024-01-01T00:00:00Z")
    for i in range(fillers):
        when = shapes.iso(start + timedelta(hours=i))
        ds.add_pull(
            WIDGETS,
            number=100 + i,
            author="dave",
            title=f"Filler {i}",
            body=f"fixes #{1000 + i}",
            created_at=when,
            updated_at=when,
            additions=i,
            deletions=1,
            commits=[_commit(WIDGETS, 100 + i, 0, when, f"filler {i}")],
        )
    for n in range(1, 6):
        when = shapes.iso(start + timedelta(days=n))
        ds.add_pull(GADGETS, number=n, author="erin", title=f"Gadget {n}", created_at=when,
                    updated_at=when)  # fmt: skip
    return ds


async def instant_sleep(_seconds: float) -> None:
    return None


def client(fake: FakeGitHub, token: str = "ghp_secret_token_123", **kwargs: Any) -> GitHubClient:
    """A REST client for `fake`, retrying at once, that knows its owner already (as a crawler
    does after its first crawl: `GET /user` is asked once per process)."""
    options: dict[str, Any] = {
        "budget": TokenBudget(fake.user_login, sleep=instant_sleep),
        "retry_backoff": 0.0,
        "secondary_backoff": 0.0,
        "sleep": instant_sleep,
        "max_retries": 4,
    }
    return GitHubClient(fake.url, token, **{**options, **kwargs})


def graphql_client(
    fake: FakeGitHub, token: str = "ghp_secret_token_123", **kwargs: Any
) -> GraphQLClient:
    """A GraphQL client for `fake`, retrying at once (like `client`)."""
    options: dict[str, Any] = {
        "retry_backoff": 0.0,
        "secondary_backoff": 0.0,
        "sleep": instant_sleep,
        "max_retries": 4,
    }
    return GraphQLClient(fake.url, token, **{**options, **kwargs})


@dataclass
class Runner:
    """Runs a job's steps in order the way the worker does, collecting progress reports."""

    registry: JobRegistry
    progress: list[tuple[str, int, int, str]] = field(default_factory=list)
    #: How many times a step handed its run back.
    handed_back: int = 0

    async def sink(self, step: str, current: int, total: int, message: str) -> None:
        self.progress.append((step, current, total, message))

    async def run(
        self,
        spec: JobSpec,
        run_id: str = "run-1",
        attempt: int = 1,
        outputs: dict[str, Output] | None = None,
    ) -> Output:
        job = self.registry.get(spec.kind)
        done = outputs if outputs is not None else {}
        for step in job.steps_for(spec):
            if step.name in done:
                continue
            done[step.name] = await self._step(step, spec, run_id, attempt, done)
        return job.summarize(spec, done)

    async def _step(
        self, step: Step, spec: JobSpec, run_id: str, attempt: int, done: dict[str, Output]
    ) -> Output:
        """Run `step`; handed back (a repository another run fetches), run it again the way the
        scheduler would, as the next attempt, without waiting `retry_after`."""
        while True:
            ctx = StepContext(run_id, attempt, spec, step.name, dict(done), self.sink)
            try:
                return await step.run(ctx)
            except HandBack:
                self.handed_back += 1
                attempt += 1
                await asyncio.sleep(0.01)


def make_runner(
    store: CrawlerStore, github: GitHubClient, export_dir: Path, **fetch: Any
) -> Runner:
    settings = CrawlerSettings(export_dir=str(export_dir))
    step = FetchStep(store, github, **fetch)
    return Runner(build_registry(store, step.tokens, settings, fetch=step))


async def snapshot(store: CrawlerStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every typed row (the columns a crawl determines), sorted: equal crawls, equal snapshots."""
    tables = {"pulls": PullRequest, "reviews": Review, "commits": Commit, "releases": Release}
    result: dict[str, list[tuple[Any, ...]]] = {}
    for name, model in tables.items():
        rows = await store.select(sa.select(*model.__table__.columns))
        result[name] = sorted(tuple(row) for row in rows)
    links = await store.select(
        sa.select(
            ClosingLink.repository,
            ClosingLink.pr_number,
            ClosingLink.issue_repository,
            ClosingLink.issue_number,
            ClosingLink.source,
        )
    )
    result["links"] = sorted(tuple(row) for row in links)
    return result
