"""Crawl throughput against the fake GitHub with response latency, against a raw-HTTP baseline.

    .venv/bin/python bench/bench_crawl.py [--prs 2000] [--latency-ms 20] [--runs 3] [--quick]

Each run crawls a generated repository into a fresh SQLite database (full), then crawls it again
(no change). After each crawl, the baseline of the same run: a bare `httpx.AsyncClient` GETs the
very requests the crawl made (taken from the fake's request log, with the crawl's ETags where the
crawl got a 304) at the same concurrency, against the same fake, parsing and storing nothing.
The machine is shared and noisy, so the ratio crawl / baseline of each run is the number to
compare between machines; the table holds medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx

from common.jobs import CrawlSpec
from common.logging import configure
from crawler_service.data.store import CrawlerStore
from crawler_service.github.client import GitHubClient
from crawler_service.github.tokens import Credential, Credentials
from crawler_service.jobs.pipeline import build_registry
from crawler_service.jobs.registry import StepContext
from crawler_service.settings import CrawlerSettings
from ghpulse.testing.fake_github import Dataset, FakeGitHub, shapes
from ghpulse.testing.fake_github.server import RequestRecord

#: The quick run of `bench/all.py` (its registry).
QUICK_ARGS = ("--quick",)

REPO = "bench/big"
MODES = ("full", "no-change incremental")
#: A rate budget above the crawl's requests: this measures the crawl, not rate-limit waits.
BUDGET = 100_000
#: The crawl's token; the replay sends it too (the crawl's `GET /user`, which finds the budget's
#: owner, answers 401 without it, and the replay would not be the same requests).
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


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


@dataclass(frozen=True)
class Measurement:
    """One crawl and its baseline, from the same run."""

    seconds: float
    #: Seconds per crawl step, in order.
    steps: Mapping[str, float]
    requests: int
    baseline_seconds: float

    @property
    def fetch_seconds(self) -> float:
        """The fetch step's share: the only step that talks to GitHub."""
        return self.steps["fetch"]

    @property
    def ratio(self) -> float:
        """Crawl time over raw-HTTP time: the crawl's overhead over the bare requests."""
        return self.seconds / self.baseline_seconds


# -- the crawl ------------------------------------------------------------------------------------


async def _sink(_step: str, _current: int, _total: int, _message: str) -> None:
    return None


async def crawl(
    store: CrawlerStore, fake: FakeGitHub, concurrency: int, run_id: str
) -> dict[str, float]:
    """Seconds per step of one crawl run (all steps, in order)."""
    settings = CrawlerSettings(export_dir=tempfile.mkdtemp(), github_concurrency=concurrency)
    async with GitHubClient(fake.url, TOKEN, concurrency=concurrency) as github:
        spec = CrawlSpec((REPO,))
        job = build_registry(store, Credentials([Credential(github)]), settings).get(spec.kind)
        outputs: dict[str, dict[str, object]] = {}
        seconds: dict[str, float] = {}
        for step in job.steps_for(spec):
            started = time.perf_counter()
            ctx = StepContext(run_id, 1, spec, step.name, dict(outputs), _sink)
            outputs[step.name] = await step.run(ctx)
            seconds[step.name] = time.perf_counter() - started
        return seconds


# -- the baseline ---------------------------------------------------------------------------------


def _url(fake: FakeGitHub, record: RequestRecord) -> str:
    query = f"?{urlencode(record.query)}" if record.query else ""
    return f"{fake.url}{record.path}{query}"


async def _current_etags(urls: Sequence[str]) -> dict[str, str]:
    """The ETag of each URL, so the replay gets a 304 wherever the crawl got one (not timed)."""
    async with httpx.AsyncClient(headers=AUTH) as http:
        return {url: (await http.get(url)).headers["etag"] for url in urls}


async def _get_all(urls: Sequence[str], etags: dict[str, str], concurrency: int) -> float:
    """Seconds for a fresh bare client to GET `urls`, `concurrency` at a time, in any order."""
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(headers=AUTH) as http:

        async def get(url: str) -> None:
            headers = {"If-None-Match": etags[url]} if url in etags else {}
            async with semaphore:
                await http.get(url, headers=headers)

        started = time.perf_counter()
        await asyncio.gather(*(get(url) for url in urls))
        return time.perf_counter() - started


def _check_same(crawled: Sequence[RequestRecord], replayed: Sequence[RequestRecord]) -> None:
    """The baseline must answer the same paths with the same statuses, or it measures else."""
    if Counter((r.path, r.status) for r in crawled) != Counter(
        (r.path, r.status) for r in replayed
    ):
        raise RuntimeError("the baseline's requests differ from the crawl's")


async def baseline(fake: FakeGitHub, crawled: Sequence[RequestRecord], concurrency: int) -> float:
    """Seconds to replay the crawl's GET requests as bare HTTP, no parsing and no storage."""
    urls = [_url(fake, record) for record in crawled]
    etags = await _current_etags(
        [url for url, r in zip(urls, crawled, strict=True) if r.status == 304]
    )
    fake.reset_requests()
    seconds = await _get_all(urls, etags, concurrency)
    _check_same(crawled, fake.requests)
    return seconds


# -- one run --------------------------------------------------------------------------------------


async def measure(
    store: CrawlerStore, fake: FakeGitHub, concurrency: int, mode: str
) -> Measurement:
    """Crawl once (as `mode`), then replay the crawl's requests as the baseline."""
    fake.reset_requests()
    steps = await crawl(store, fake, concurrency, run_id=mode)
    crawled = fake.requests
    raw = await baseline(fake, crawled, concurrency)
    return Measurement(sum(steps.values()), steps, len(crawled), raw)


async def one_run(ds: Dataset, latency: float, concurrency: int) -> dict[str, Measurement]:
    """{mode: measurement} for a full and a no-change crawl into a fresh database."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeGitHub(ds, latency=latency, rate_limit=BUDGET) as fake,
    ):
        async with await CrawlerStore.open(f"sqlite:///{tmp}/bench.db", migrate=True) as store:
            return {mode: await measure(store, fake, concurrency, mode) for mode in MODES}


# -- report ---------------------------------------------------------------------------------------


def _medians(runs: Sequence[dict[str, Measurement]], mode: str) -> Measurement:
    """The median of each field over the runs (`ratio` separately: see `_median_ratio`)."""
    of = [run[mode] for run in runs]
    return Measurement(
        seconds=statistics.median(m.seconds for m in of),
        steps={step: statistics.median(m.steps[step] for m in of) for step in of[0].steps},
        requests=int(statistics.median(m.requests for m in of)),
        baseline_seconds=statistics.median(m.baseline_seconds for m in of),
    )


def _median_ratio(runs: Sequence[dict[str, Measurement]], mode: str) -> float:
    """The median of the per-run ratios: each ratio pairs a crawl with its own run's baseline."""
    return statistics.median(run[mode].ratio for run in runs)


def table(runs: Sequence[dict[str, Measurement]], prs: int, floor: float) -> list[str]:
    """The markdown table of medians; `floor` is latency / concurrency (seconds per request)."""
    lines = [
        "| crawl | crawl (s) | of which fetch (s) | raw HTTP (s) | crawl / raw | PRs/s "
        "| requests | requests/PR | latency floor (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        m = _medians(runs, mode)
        lines.append(
            f"| {mode} | {m.seconds:.2f} | {m.fetch_seconds:.2f} | {m.baseline_seconds:.3f} "
            f"| {_median_ratio(runs, mode):.2f}x | {prs / m.seconds:,.1f} | {m.requests} "
            f"| {m.requests / prs:.3f} | {m.requests * floor:.2f} |"
        )
    return lines


def step_table(runs: Sequence[dict[str, Measurement]]) -> list[str]:
    """The markdown table of the median seconds per step."""
    names = list(runs[0][MODES[0]].steps)
    lines = [f"| crawl | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for mode in MODES:
        steps = _medians(runs, mode).steps
        lines.append(f"| {mode} | " + " | ".join(f"{steps[n]:.2f}" for n in names) + " |")
    return lines


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--prs", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="the client's requests in flight"
    )
    parser.add_argument("--quick", action="store_true", help="smoke check: 300 PRs, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.prs, args.runs = 300, 1
    return args


def main() -> None:
    args = _arguments()
    configure(level="warning")
    ds = generate(args.prs)
    latency = args.latency_ms / 1000
    runs = [asyncio.run(one_run(ds, latency, args.concurrency)) for _ in range(args.runs)]
    print(
        f"Crawl of a {args.prs}-PR repository, fake GitHub with {args.latency_ms:g} ms latency, "
        f"client concurrency {args.concurrency}, SQLite; median of {args.runs} run(s). "
        "Raw HTTP: the same requests from a bare httpx client in the same run; "
        "latency floor: requests x latency / concurrency.\n"
    )
    print("\n".join(table(runs, args.prs, latency / args.concurrency)))
    print("\nSeconds per step (medians):\n")
    print("\n".join(step_table(runs)))


if __name__ == "__main__":
    main()
