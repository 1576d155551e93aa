"""Crawl throughput against the fake GitHub with response latency: full and no-change incremental.

    .venv/bin/python bench/bench_crawl.py [--prs 2000] [--latency-ms 20] [--runs 3]

Each run crawls a generated repository into a fresh SQLite database (full), then crawls it again
(no change). Prints a markdown table of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from common.jobs import CrawlSpec
from common.logging import configure
from crawler_service.fake_github import Dataset, FakeGitHub, shapes
from crawler_service.github import GitHubClient
from crawler_service.jobs import StepContext
from crawler_service.pipeline import build_registry
from crawler_service.settings import CrawlerSettings
from crawler_service.store import CrawlerStore

REPO = "bench/big"


def generate(prs: int) -> Dataset:
    """One repository with `prs` merged PRs, each with a review and two commits."""
    ds = Dataset()
    ds.add_repository(shapes.repository("bench", "big", created_at="2020-01-01T00:00:00Z"))
    start = datetime(2023, 1, 1, tzinfo=UTC)
    reviewer = shapes.user("reviewer")
    for n in range(1, prs + 1):
        created = start + timedelta(hours=n)
        stamp = shapes.iso(created)
        merged = shapes.iso(created + timedelta(hours=5))
        commits = [
            shapes.commit(
                REPO,
                shapes.sha(REPO, n, i),
                message=f"Fix #{n + i}",
                author_name="Dev",
                author_email="dev@example.com",
                author_date=shapes.iso(created - timedelta(hours=i)),
            )
            for i in range(2)
        ]
        pr = ds.add_pull(
            REPO,
            number=n,
            author=f"dev{n % 17}",
            body=f"Closes #{n}",
            created_at=stamp,
            updated_at=merged,
            state="closed",
            closed_at=merged,
            merged_at=merged,
            additions=n % 700,
            deletions=n % 300,
            commits=commits,
        )
        review = shapes.review(pr, reviewer=reviewer, state="APPROVED", submitted_at=merged)
        ds.repo(REPO).reviews[n] = [review]  # type: ignore[union-attr]
    return ds


async def _sink(_step: str, _current: int, _total: int, _message: str) -> None:
    return None


async def crawl(store: CrawlerStore, fake: FakeGitHub, concurrency: int, run_id: str) -> float:
    """Seconds for one crawl run (all steps)."""
    settings = CrawlerSettings(export_dir=tempfile.mkdtemp(), github_concurrency=concurrency)
    async with GitHubClient(fake.url, "bench-token", concurrency=concurrency) as github:
        spec = CrawlSpec((REPO,))
        job = build_registry(store, github, settings).get(spec.kind)
        outputs: dict[str, dict[str, object]] = {}
        started = time.perf_counter()
        for step in job.steps_for(spec):
            ctx = StepContext(run_id, 1, spec, step.name, dict(outputs), _sink)
            outputs[step.name] = await step.run(ctx)
        return time.perf_counter() - started


async def one_run(ds: Dataset, latency: float, concurrency: int) -> dict[str, tuple[float, int]]:
    """{mode: (seconds, requests)} for a full and a no-change crawl into a fresh database."""
    results = {}
    # A budget above the crawl's requests: this measures the crawl, not rate-limit waits.
    budget = 100_000
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeGitHub(ds, latency=latency, rate_limit=budget) as fake,
    ):
        async with await CrawlerStore.open(f"sqlite:///{tmp}/bench.db", migrate=True) as store:
            for mode in ("full", "no-change incremental"):
                fake.reset_requests()
                seconds = await crawl(store, fake, concurrency, run_id=mode)
                results[mode] = (seconds, len(fake.requests))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prs", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    configure(level="warning")
    ds = generate(args.prs)
    runs = [
        asyncio.run(one_run(ds, args.latency_ms / 1000, args.concurrency)) for _ in range(args.runs)
    ]
    print(
        f"Crawl of a {args.prs}-PR repository, fake GitHub with {args.latency_ms:g} ms latency, "
        f"client concurrency {args.concurrency}, SQLite; median of {args.runs} runs.\n"
    )
    print("| crawl | seconds | PRs/s | requests | requests/PR |")
    print("|---|---:|---:|---:|---:|")
    for mode in ("full", "no-change incremental"):
        seconds = statistics.median(run[mode][0] for run in runs)
        requests = int(statistics.median(run[mode][1] for run in runs))
        print(
            f"| {mode} | {seconds:.2f} | {args.prs / seconds:.1f} | {requests} | "
            f"{requests / args.prs:.3f} |"
        )


if __name__ == "__main__":
    main()
