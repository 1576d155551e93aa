"""The same rows through REST and through GraphQL: one fake dataset crawled both ways into two
databases, every table and the exports compared row by row, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from common.jobs import CrawlSpec, JobSpec, RecalculateSpec
from crawler_service.data.models import FetchState, RawItem, Repository
from crawler_service.data.store import CrawlerStore
from crawler_service.jobs.steps.fetch import API_AUTO, API_GRAPHQL
from ghpulse.testing.fake_github import Dataset, FakeGitHub, shapes
from tests.support import postgres
from tests.support.crawl import (
    GADGETS,
    WIDGETS,
    client,
    graphql_client,
    make_dataset,
    make_runner,
    snapshot,
)
from tests.support.github import ANTS, ants_dataset, sample_dataset

BOT = shapes.user("dependabot[bot]", kind="Bot")
BOT_EMAIL = "49699333+dependabot[bot]@users.noreply.github.com"
BIG = 9  # a PR with more reviews and commits than one GraphQL page holds


def acme() -> Dataset:
    """The hand-checked crawl dataset plus what only GraphQL spells differently: a PR by a bot, a
    bot's commits (no GitHub account in GraphQL), and a PR whose reviews and commits overflow."""
    ds = make_dataset()
    start = shapes.parse_iso("2024-02-01T00:00:00Z")
    commits = [
        shapes.commit(
            WIDGETS,
            shapes.sha(WIDGETS, BIG, i),
            message=f"step {i}" if i else "Fixes #77 in the first commit",
            author_name="dependabot[bot]" if i % 2 else "Alice",
            author_email=BOT_EMAIL if i % 2 else "alice@example.com",
            author_date=shapes.iso(start + timedelta(minutes=i)),
            committer_date=shapes.iso(start + timedelta(minutes=i, seconds=30)),
            author=BOT if i % 2 else shapes.user("alice"),
        )
        for i in range(260)  # GitHub lists 250 of them, both ways
    ]
    pr = ds.add_pull(
        WIDGETS,
        number=BIG,
        author="dependabot[bot]",
        title="Bump everything",
        body="Resolves acme/gadgets#5",
        created_at="2024-02-02T00:00:00Z",
        updated_at="2024-03-08T00:00:00Z",
        state="closed",
        closed_at="2024-03-08T00:00:00Z",
        merged_at="2024-03-08T00:00:00Z",
        additions=40,
        deletions=2,
        changed_files=3,
        commits=commits,
    )
    pr["user"] = BOT
    reviewers = [BOT, shapes.user("bob"), shapes.user("carol"), None]
    ds.repo(WIDGETS).reviews[BIG] = [  # type: ignore[union-attr]
        shapes.review(
            pr,
            reviewer=reviewers[i % 4],
            state=("COMMENTED", "APPROVED", "CHANGES_REQUESTED", "DISMISSED")[i % 4],
            submitted_at=shapes.iso(start + timedelta(days=2, minutes=i)),
        )
        for i in range(130)
    ]
    return ds


DATASETS: dict[str, tuple[Callable[[], Dataset], CrawlSpec]] = {
    "acme": (acme, CrawlSpec((WIDGETS, GADGETS))),
    "sample": (sample_dataset, CrawlSpec(organization="ghpulse-demo")),
    "ants": (ants_dataset, CrawlSpec((ANTS,))),
}


@pytest.fixture(params=postgres.BACKENDS)
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two migrated, empty crawler databases on the same backend."""
    from crawler_service.data.migrations import upgrade

    with ExitStack() as stack:
        urls = [
            stack.enter_context(
                postgres.migrated(request, tmp_path, name, upgrade, "crawler_pg_template")
            )
            for name in ("crawler_rest", "crawler_graphql")
        ]
        yield urls[0], urls[1]


async def crawl(
    fake: FakeGitHub, url: str, exports: Path, spec: JobSpec, api: str | None
) -> dict[str, Any]:
    """Run `spec` against `fake` into `url`: through REST (`api` None) or GraphQL."""
    async with (
        await CrawlerStore.open(url) as store,
        client(fake) as github,
        graphql_client(fake) as graphql,
    ):
        options = {} if api is None else {"graphql": graphql, "api": api}
        runner = make_runner(store, github, exports, **options)
        return await runner.run(spec)


async def everything(url: str, exports: Path) -> dict[str, Any]:
    """Every table a crawl determines, plus the export files."""
    async with await CrawlerStore.open(url) as store:
        tables: dict[str, Any] = dict(await snapshot(store))
        tables["repositories"] = sorted(
            await store.select(
                sa.select(
                    Repository.repository,
                    Repository.full_name,
                    Repository.owner,
                    Repository.default_branch,
                    Repository.archived,
                )
            )
        )
        tables["watermarks"] = sorted(
            await store.select(sa.select(FetchState.repository, FetchState.watermark))
        )
        tables["raw_items"] = sorted(
            await store.select(sa.select(RawItem.repository, RawItem.kind, RawItem.key))
        )
    tables["exports"] = exported(exports)
    return tables


def exported(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` by relative path."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("name", list(DATASETS))
async def test_rest_and_graphql_store_identical_rows(
    name: str, two_databases: tuple[str, str], tmp_path: Path
):
    make, spec = DATASETS[name]
    rest_db, graphql_db = two_databases
    with FakeGitHub(make()) as fake:
        rest = await crawl(fake, rest_db, tmp_path / "rest", spec, None)
        fake.reset_requests()
        bulk = await crawl(fake, graphql_db, tmp_path / "graphql", spec, API_AUTO)
        graphql_requests = fake.requests

    assert rest["graphql_queries"] == 0
    assert bulk["graphql_queries"] > 0
    assert bulk["prs_updated"] == rest["prs_updated"] > 0
    assert bulk["links"] == rest["links"]
    assert len([r for r in graphql_requests if r.method == "POST"]) == bulk["graphql_queries"]
    assert not [r for r in graphql_requests if "/pulls/" in r.path]  # no per-PR REST request
    expected = await everything(rest_db, tmp_path / "rest")
    got = await everything(graphql_db, tmp_path / "graphql")
    assert expected["pulls"], "the comparison must compare something"
    assert expected["exports"]
    for table in expected:
        assert got[table] == expected[table], table

    # `recalculate` rebuilds the same rows from the GraphQL raw data.
    repositories = tuple(sorted(r[1] for r in expected["repositories"] if not r[4]))
    await crawl(fake, graphql_db, tmp_path / "graphql", RecalculateSpec(repositories), None)
    assert await everything(graphql_db, tmp_path / "graphql") == expected


async def test_overflowing_reviews_and_commits_are_completed(tmp_path: Path):
    with FakeGitHub(acme()) as fake:
        url = f"sqlite:///{tmp_path}/c.db"
        from crawler_service.data.migrations import upgrade

        upgrade(url)
        output = await crawl(fake, url, tmp_path / "x", CrawlSpec((WIDGETS,)), API_GRAPHQL)
        points = list(fake.graphql_points)
    async with await CrawlerStore.open(url) as store:
        rows = (await snapshot(store))["commits"]
        big = [r for r in rows if r[1] == BIG]
        reviews = [r for r in (await snapshot(store))["reviews"] if r[1] == BIG]
    assert len(big) == 250
    assert len(reviews) == 130
    assert {r[5] for r in big} == {"alice", "dependabot[bot]"}
    # 135 PRs: 3 pages of 50, then follow-ups for the big PR (reviews and commits, twice).
    assert output["graphql_queries"] == 3 + 2
    assert output["graphql_points"] == sum(points) == 5
    assert output["requests"] == 2  # the repository and the releases; no list probe
