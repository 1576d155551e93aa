"""One GitHub budget for the fleet: four crawlers' clients on one token, with and without the
shared budget (the `github_budgets` row in the crawler database), in the same run.

    .venv/bin/python bench/bench_budget.py [--runs 3] [--db-prefix bench_budget]

Each run starts a fake GitHub with a 600 requests/hour limit and, per mode, a fresh PostgreSQL
crawler database (127.0.0.1:5432, dropped afterwards). Four clients (each its own connection pool
and HTTP pool, concurrency 4, four loops of `GET /repos/o/r/pulls/N` each) then:

- primary: spend the budget (the hour's last 120 requests); counted are the requests any client
  *started* after the budget was known to be spent (the first answer with
  `x-ratelimit-remaining: 0`, which the shared mode writes to the database at once);
- secondary: one request gets a secondary limit with `retry-after: 2`; counted are the requests
  any client started after that pause was recorded and before it passed.

`shared` is the shipped behaviour; `local` turns the shared row off (GHPULSE_GITHUB_SHARED_BUDGET
=false: each client knows only its own answers, as before issue 10); `bounded` is `shared` with
GHPULSE_GITHUB_FLEET_CONCURRENCY=4 (the fleet's requests in flight bounded through the database).
Every answer takes LATENCY seconds, so that requests overlap; `max_in_flight` is the most the fake
answered at once. Raw numbers go to bench/results/budget.json; the table holds medians over the
runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg

from common.logging import configure
from crawler_service.data.budgets import BudgetStore
from crawler_service.data.migrations import upgrade
from crawler_service.data.store import CrawlerStore
from crawler_service.github.budget import TokenBudget
from crawler_service.github.client import GitHubClient
from ghpulse.testing.fake_github import SAMPLE_DIR, Dataset, FakeGitHub

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TOKEN = "bench-token"
API = "ghpulse-demo/api"
CRAWLERS, CONCURRENCY, LOOPS = 4, 4, 4
LIMIT = 600
RETRY_AFTER = 2
STARTING_BUDGET = 120
LATENCY = 0.02
FLEET_BOUND = 4
MODES = ("local", "shared", "bounded")

#: The run of `bench/all.py` (its registry): one run of every mode, ~1 min here.
QUICK_ARGS = ("--runs", "1")


class Sends(httpx.AsyncHTTPTransport):
    """Records when each request starts (wall clock), shared by every client of a run."""

    def __init__(self, starts: list[float]) -> None:
        super().__init__()
        self.starts = starts

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.starts.append(time.time())
        return await super().handle_async_request(request)


class Moments:
    """When the fleet first knew the budget spent, and the first secondary pause."""

    def __init__(self) -> None:
        self.spent_at: float | None = None
        self.paused: tuple[float, float] | None = None


class Watched(TokenBudget):
    """A budget that records the moments the bench measures from (after they are shared)."""

    moments: Moments

    async def pause(self, until: float) -> None:
        await super().pause(until)
        if self.moments.paused is None:
            self.moments.paused = (time.time(), until)

    async def observe(self, headers: Any) -> None:
        await super().observe(headers)
        if self.state.remaining == 0 and self.moments.spent_at is None:
            self.moments.spent_at = time.time()


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(cast(Any, sql))


async def _fleet(
    stack: AsyncExitStack,
    url: str,
    fake: FakeGitHub,
    mode: str,
    starts: list[float],
    owner: str,
) -> tuple[list[GitHubClient], Moments]:
    moments = Moments()
    clients = []
    for _ in range(CRAWLERS):
        store = await stack.enter_async_context(await CrawlerStore.open(url))
        shared = BudgetStore(store.engine) if mode != "local" else None
        bound = FLEET_BOUND if mode == "bounded" else 0
        budget = Watched(owner, shared=shared, fleet_concurrency=bound)
        budget.moments = moments
        github = GitHubClient(
            fake.url,
            TOKEN,
            concurrency=CONCURRENCY,
            budget=budget,
            transport=Sends(starts),
            max_retries=10,
        )
        clients.append(await stack.enter_async_context(github))
    return clients, moments


async def _hammer(clients: list[GitHubClient], until: Any) -> None:
    """Every client's loops fetch pull requests until `until()` is true, then stop them all."""

    async def loop(github: GitHubClient, offset: int) -> None:
        number = offset
        while True:
            await github.pull(API, number % 100 + 1)
            number += LOOPS

    tasks = [asyncio.create_task(loop(c, i)) for c in clients for i in range(LOOPS)]
    while not until():  # noqa: ASYNC110 - a poll of wall time, in a bench
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def primary(url: str, mode: str) -> dict[str, Any]:
    starts: list[float] = []
    dataset = Dataset.load(SAMPLE_DIR)
    with FakeGitHub(dataset, rate_limit=LIMIT, token=TOKEN, latency=LATENCY) as fake:
        async with AsyncExitStack() as stack:
            clients, moments = await _fleet(stack, url, fake, mode, starts, "owner-primary")
            # The hour's last STARTING_BUDGET requests of the 600: the run ends in seconds.
            fake.budget.set(STARTING_BUDGET)
            began = time.time()
            settled: list[float] = []

            def done() -> bool:
                if moments.spent_at is None:
                    return False
                settled.append(time.time())
                return settled[-1] - moments.spent_at > 1.0

            await _hammer(clients, done)
        refused = sum(1 for r in fake.requests if r.status == 403)
    spent_at = moments.spent_at or began
    return {
        "requests": len(starts),
        "spend_seconds": round(spent_at - began, 3),
        "sent_after_spent": sum(1 for t in starts if t > spent_at),
        "refused_403": refused,
        "max_in_flight": fake.max_in_flight,
    }


async def secondary(url: str, mode: str) -> dict[str, Any]:
    starts: list[float] = []
    with FakeGitHub(Dataset.load(SAMPLE_DIR), token=TOKEN, latency=LATENCY) as fake:
        async with AsyncExitStack() as stack:
            clients, moments = await _fleet(stack, url, fake, mode, starts, "owner-secondary")
            fake.faults.secondary_limit(r"/pulls/50$", retry_after=RETRY_AFTER)

            def done() -> bool:
                return moments.paused is not None and time.time() > moments.paused[1] + 0.5

            await _hammer(clients, done)
    assert moments.paused is not None
    known, until = moments.paused
    return {
        "requests": len(starts),
        "sent_during_pause": sum(1 for t in starts if known < t < until),
        "max_in_flight": fake.max_in_flight,
    }


async def one_run(prefix: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode in MODES:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        _admin(f'CREATE DATABASE "{name}"')
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        try:
            upgrade(url)
            results[mode] = {
                "primary": await primary(url, mode),
                "secondary": await secondary(url, mode),
            }
        finally:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


def _median(runs: list[dict[str, Any]], mode: str, part: str, key: str) -> float:
    return float(statistics.median(run[mode][part][key] for run in runs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db-prefix", default="bench_budget")
    args = parser.parse_args()
    configure(level="error")
    runs = [asyncio.run(one_run(args.db_prefix)) for _ in range(args.runs)]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    out = ROOT / "bench" / "results" / "budget.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"commit": commit, "runs": runs}, indent=1) + "\n")
    print(f"commit {commit}, {args.runs} runs, medians; raw: {out.relative_to(ROOT)}")
    print("| metric | local (baseline) | shared | bounded (4) | target |")
    print("|---|---|---|---|---|")
    for part, key, target in (
        ("primary", "sent_after_spent", "0"),
        ("primary", "refused_403", "-"),
        ("primary", "max_in_flight", f"<= {FLEET_BOUND} bounded"),
        ("secondary", "sent_during_pause", "0"),
        ("secondary", "max_in_flight", f"<= {FLEET_BOUND} bounded"),
    ):
        figures = " | ".join(f"{_median(runs, m, part, key):g}" for m in MODES)
        print(f"| {part}: {key} | {figures} | {target} |")


if __name__ == "__main__":
    main()
