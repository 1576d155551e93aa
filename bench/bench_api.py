"""REST against GraphQL: the same crawls through both fetch paths, in the same run, same fake.

    .venv/bin/python bench/bench_api.py [--prs 2000] [--latency-ms 20] [--runs 3] [--quick]

Each run serves a generated repository (`bench_crawl.generate`: merged PRs with a review and two
commits each) and the recorded panjf2000/ants data from one fake GitHub with the given latency,
and crawls each of them into fresh SQLite databases twice: through REST (GHPULSE_GITHUB_API=rest)
and through GraphQL behind the conditional probe (auto, with a token), alternating which goes
first. Then it crawls the GraphQL database again with nothing changed. It counts the requests
the fake answered (REST GETs and GraphQL POSTs), the REST budget and GraphQL points spent, times
every step of each crawl, and checks that both databases hold the same rows. The table holds
medians over the runs; ratios are medians of each run's own ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_crawl import BUDGET, REPO, generate

from common.jobs import CrawlSpec
from common.logging import configure
from crawler_service.data.models import ClosingLink, Commit, PullRequest, Release, Review
from crawler_service.data.store import CrawlerStore
from crawler_service.github.client import GitHubClient
from crawler_service.github.graphql import GraphQLClient
from crawler_service.github.tokens import Credential, Credentials
from crawler_service.jobs.pipeline import build_registry
from crawler_service.jobs.registry import StepContext
from crawler_service.settings import CrawlerSettings
from ghpulse.testing.fake_github import Dataset, FakeGitHub

#: The quick run of `bench/all.py` (its registry).
QUICK_ARGS = ("--quick",)

ROOT = Path(__file__).resolve().parents[1]
ANTS_DIR = ROOT / "tests" / "data" / "github-ants"
ANTS = "panjf2000/ants"
TOKEN = "bench-token"
CONCURRENCY = 4


@dataclass(frozen=True)
class Crawl:
    """One crawl: wall time of all steps, of fetch, and what it cost GitHub."""

    seconds: float
    fetch_seconds: float
    #: Seconds per step, in order.
    steps: dict[str, float]
    requests: int
    rest_ok: int
    queries: int
    rest_budget: int
    points: int


@dataclass(frozen=True)
class Run:
    """One run's crawls by name, and whether REST and GraphQL stored the same rows."""

    crawls: dict[str, Crawl]
    identical: dict[str, bool]


async def _sink(_step: str, _current: int, _total: int, _message: str) -> None:
    return None


async def crawl(fake: FakeGitHub, url: str, api: str, repository: str, run_id: str) -> Crawl:
    """Crawl `repository` into `url` through `api` (rest or auto)."""
    settings = CrawlerSettings(
        export_dir=tempfile.mkdtemp(),
        github_concurrency=CONCURRENCY,
        github_token=TOKEN,
        github_api=api,
    )
    fake.reset_requests()
    budget, points = fake.budget.remaining, sum(fake.graphql_points)
    seconds: dict[str, float] = {}
    async with (
        await CrawlerStore.open(url) as store,
        GitHubClient(fake.url, TOKEN, concurrency=CONCURRENCY) as github,
        GraphQLClient(fake.url, TOKEN, concurrency=CONCURRENCY) as graphql,
    ):
        credential = Credential(github, graphql if settings.uses_graphql else None)
        registry = build_registry(store, Credentials([credential]), settings)
        spec = CrawlSpec((repository,))
        outputs: dict[str, Any] = {}
        for step in registry.get(spec.kind).steps_for(spec):
            started = time.perf_counter()
            ctx = StepContext(run_id, 1, spec, step.name, dict(outputs), _sink)
            outputs[step.name] = await step.run(ctx)
            seconds[step.name] = time.perf_counter() - started
    requests = fake.requests
    return Crawl(
        seconds=sum(seconds.values()),
        fetch_seconds=seconds["fetch"],
        steps=seconds,
        requests=len(requests),
        rest_ok=sum(1 for r in requests if r.method == "GET" and r.status == 200),
        queries=sum(1 for r in requests if r.method == "POST"),
        rest_budget=budget - fake.budget.remaining,
        points=sum(fake.graphql_points) - points,
    )


async def rows(url: str) -> list[list[tuple[Any, ...]]]:
    """Every typed row a crawl determines (links without their surrogate id), sorted."""
    link_columns = [c for c in ClosingLink.__table__.columns if c.name != "id"]
    selects = [
        sa.select(*model.__table__.columns) for model in (PullRequest, Review, Commit, Release)
    ] + [sa.select(*link_columns)]
    async with await CrawlerStore.open(url) as store:
        return [sorted(tuple(r) for r in await store.select(s)) for s in selects]


async def both_ways(fake: FakeGitHub, tmp: str, name: str, repo: str, flip: bool) -> Run:
    urls = {api: f"sqlite:///{tmp}/{name}-{api}.db" for api in ("rest", "auto")}
    for url in urls.values():
        async with await CrawlerStore.open(url, migrate=True):
            pass
    crawls: dict[str, Crawl] = {}
    for api in ("auto", "rest") if flip else ("rest", "auto"):
        crawls[f"{name} {api}"] = await crawl(fake, urls[api], api, repo, f"{name}-{api}")
    crawls[f"{name} no-change"] = await crawl(fake, urls["auto"], "auto", repo, f"{name}-again")
    identical = await rows(urls["rest"]) == await rows(urls["auto"])
    return Run(crawls, {name: identical})


async def one_run(big: Dataset, ants: Dataset, latency: float, flip: bool) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Dataset([*big.copy().repos.values(), *ants.copy().repos.values()])
        with FakeGitHub(dataset, latency=latency, rate_limit=BUDGET) as fake:
            first = await both_ways(fake, tmp, "big", REPO, flip)
            second = await both_ways(fake, tmp, "ants", ANTS, flip)
    return Run({**first.crawls, **second.crawls}, {**first.identical, **second.identical})


def _median(runs: Sequence[Run], name: str, field: str) -> float:
    return float(statistics.median(getattr(run.crawls[name], field) for run in runs))


def _ratio(runs: Sequence[Run], a: str, b: str, field: str) -> float:
    return float(
        statistics.median(
            getattr(run.crawls[a], field) / max(getattr(run.crawls[b], field), 1e-9) for run in runs
        )
    )


def table(runs: Sequence[Run]) -> list[str]:
    lines = [
        "| crawl | path | crawl (s) | of which fetch (s) | requests | REST 200s | GraphQL queries "
        "| REST budget | GraphQL points |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in runs[0].crawls:
        repo, api = name.split(" ", 1)
        label = {"rest": "REST", "auto": "GraphQL (auto)", "no-change": "auto, no change"}[api]
        lines.append(
            f"| {repo} | {label} | {_median(runs, name, 'seconds'):.2f} "
            f"| {_median(runs, name, 'fetch_seconds'):.2f} | {_median(runs, name, 'requests'):g} "
            f"| {_median(runs, name, 'rest_ok'):g} | {_median(runs, name, 'queries'):g} "
            f"| {_median(runs, name, 'rest_budget'):g} | {_median(runs, name, 'points'):g} |"
        )
    return lines


def step_table(runs: Sequence[Run]) -> list[str]:
    names = list(runs[0].crawls["big rest"].steps)
    lines = [f"| crawl | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for crawl_name in runs[0].crawls:
        medians = [
            statistics.median(run.crawls[crawl_name].steps[step] for run in runs) for step in names
        ]
        lines.append(f"| {crawl_name} | " + " | ".join(f"{m:.2f}" for m in medians) + " |")
    return lines


def targets(runs: Sequence[Run]) -> list[str]:
    requests = _ratio(runs, "big auto", "big rest", "requests")
    seconds = _ratio(runs, "big auto", "big rest", "seconds")
    fetch = _ratio(runs, "big auto", "big rest", "fetch_seconds")
    ants = max(run.crawls["ants auto"].requests for run in runs)
    spent = max(
        run.crawls[f"{r} no-change"].rest_budget + run.crawls[f"{r} no-change"].points
        for run in runs
        for r in ("big", "ants")
    )
    same = all(all(run.identical.values()) for run in runs)
    rows = [
        ("big: GraphQL requests / REST requests", f"{requests:.4f} (1/{1 / requests:.0f})",
         "≤ 1/20", requests <= 1 / 20),
        ("big: GraphQL crawl time / REST crawl time", f"{seconds:.3f}x", "≤ 0.3x", seconds <= 0.3),
        ("big: GraphQL fetch time / REST fetch time", f"{fetch:.3f}x", "", None),
        ("ants: GraphQL full crawl requests (most of any run)", f"{ants}", "≤ 10", ants <= 10),
        ("no-change crawls: budget spent (REST + points, most of any run)", f"{spent}", "0",
         spent == 0),
        ("same rows through REST and GraphQL (every run, both repositories)", str(same), "yes",
         same),
    ]  # fmt: skip
    lines = ["| target | measured | wanted | reached |", "|---|---:|---|:---:|"]
    for label, measured, wanted, reached in rows:
        mark = "" if reached is None else ("yes" if reached else "no")
        lines.append(f"| {label} | {measured} | {wanted} | {mark} |")
    return lines


def _commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True)
    return result.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--prs", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke check: 300 PRs, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.prs, args.runs = 300, 1
    configure(level="warning")
    big, ants = generate(args.prs), Dataset.load(ANTS_DIR)
    latency = args.latency_ms / 1000
    runs = [asyncio.run(one_run(big, ants, latency, flip=i % 2 == 1)) for i in range(args.runs)]
    print(
        f"`python bench/bench_api.py --prs {args.prs} --latency-ms {args.latency_ms:g} "
        f"--runs {args.runs}` at commit {_commit()}: a {args.prs}-PR repository ('big') and "
        f"panjf2000/ants, fake GitHub with {args.latency_ms:g} ms latency, client concurrency "
        f"{CONCURRENCY}, SQLite; medians of {args.runs} run(s).\n"
    )
    print("\n".join(table(runs)))
    print("\nSeconds per step (medians):\n")
    print("\n".join(step_table(runs)))
    print()
    print("\n".join(targets(runs)))


if __name__ == "__main__":
    main()
