"""One GitHub budget for a fleet of four `ghpulse crawler` processes on one token, sharing a
PostgreSQL crawler database, against the fake GitHub with a 600 requests/hour limit:

- no request reaches GitHub once the shared row says the budget is spent, until its reset, and
  GitHub never has to refuse one for the primary limit;
- after a secondary limit with `retry-after`, no crawler sends before it has passed;
- GHPULSE_GITHUB_FLEET_CONCURRENCY bounds the requests in flight across the four processes.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
import pytest

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from crawler_service.data.migrations import upgrade
from ghpulse.testing.fake_github import Dataset, FakeGitHub, RepoData, RequestRecord
from tests.support import postgres
from tests.support.github import sample_dataset
from tests.support.processes import Processes

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOKEN = "ghp_fleet_budget_token_0123456789"
OWNER = "fleet-owner"
CRAWLERS, PER_CRAWLER, FLEET = 4, 4, 4
REPOSITORIES = [f"fleet/r{i}" for i in range(CRAWLERS)]
PRS = 30
#: The hour's last requests when the crawls start, and seconds until the budget resets.
STARTING_BUDGET, RESET_IN = 150, 25
RETRY_AFTER = 5
#: How long a request that passed the checks may take to reach the fake (seconds).
IN_FLIGHT = 1.0
TERMINAL = {runs_pb2.RUN_STATE_SUCCEEDED, runs_pb2.RUN_STATE_FAILED, runs_pb2.RUN_STATE_CANCELLED}


def fleet_dataset() -> Dataset:
    """Four repositories of 30 pull requests each (copies of the sample's `infra`)."""
    source = sample_dataset().require("ghpulse-demo/infra")
    numbers = sorted(source.pulls)[:PRS]
    copies = []
    for full_name in REPOSITORIES:
        owner, name = full_name.split("/")
        repository = copy.deepcopy(source.repository)
        repository.update(full_name=full_name, name=name)
        repository["owner"] = {**repository["owner"], "login": owner}
        copies.append(
            RepoData(
                repository,
                pulls={n: copy.deepcopy(source.pulls[n]) for n in numbers},
                reviews={n: copy.deepcopy(source.reviews.get(n, [])) for n in numbers},
                commits={n: copy.deepcopy(source.commits.get(n, [])) for n in numbers},
                releases=copy.deepcopy(source.releases),
            )
        )
    return Dataset(copies)


@dataclass
class Seen:
    """When the test first saw the shared row say the budget is spent, or a pause."""

    spent_at: float | None = None
    paused: tuple[float, float] | None = None
    stop: threading.Event = field(default_factory=threading.Event)


def watch_row(url: str, seen: Seen) -> None:
    """Poll the owner's `github_budgets` row (a thread of the test process)."""
    with psycopg.connect(url, autocommit=True) as conn:
        while not seen.stop.is_set():
            row = conn.execute(
                "SELECT remaining, reset_at, paused_until FROM github_budgets WHERE owner = %s",
                (OWNER,),
            ).fetchone()
            now = time.time()
            if row is not None:
                remaining, reset_at, paused_until = row
                if seen.spent_at is None and remaining == 0 and (reset_at or 0) > now:
                    seen.spent_at = now
                if seen.paused is None and paused_until is not None and paused_until > now:
                    seen.paused = (now, paused_until)
            time.sleep(0.02)


def most_in_flight(requests: list[RequestRecord]) -> int:
    """The most GitHub requests the fake answered at once (`GET /user`, which the crawlers send
    before they know their owner and so before any slot, left out)."""
    edges = sorted(
        [(r.at, 1) for r in requests if r.path != "/user"]
        + [(r.done, -1) for r in requests if r.path != "/user"]
    )
    current = highest = 0
    for _moment, step in edges:
        current += step
        highest = max(highest, current)
    return highest


@pytest.fixture
def crawler_db() -> Iterator[str]:
    problem = postgres.reachable()
    if problem is not None:
        pytest.skip(problem)
    with postgres.fresh("ghp_fleet") as url:
        upgrade(url)
        yield url


def test_four_crawlers_share_one_budget(processes: Processes, crawler_db: str) -> None:
    with FakeGitHub(
        fleet_dataset(), rate_limit=600, token=TOKEN, user_login=OWNER, latency=0.05
    ) as fake:
        processes.scheduler()
        env = {
            "GHPULSE_CRAWLER_DB": crawler_db,
            # PostgreSQL is shared with other tests: a small pool per crawler (README, Connection
            # budget) is enough for four requests at once.
            "GHPULSE_CRAWLER_DB_POOL_SIZE": "2",
            "GHPULSE_CRAWLER_DB_MAX_OVERFLOW": "3",
            "GHPULSE_CRAWLER_MIGRATE": "false",
            "GHPULSE_CRAWLER_PLUGINS": "",
            "GHPULSE_CRAWLER_SLOTS": "1",
            "GHPULSE_GITHUB_API_URL": fake.url,
            "GHPULSE_GITHUB_API": "rest",
            "GITHUB_TOKEN": TOKEN,
            "GHPULSE_GITHUB_CONCURRENCY": str(PER_CRAWLER),
            "GHPULSE_GITHUB_FLEET_CONCURRENCY": str(FLEET),
        }
        for n in range(CRAWLERS):
            processes.crawler(f"fleet-{n}", **env)
        seen = Seen()
        watcher = threading.Thread(target=watch_row, args=(crawler_db, seen), daemon=True)
        watcher.start()
        try:
            fake.budget.set(STARTING_BUDGET, reset_in=RESET_IN)
            reset_at = float(fake.budget.reset)
            runs = _trigger_all(processes.scheduler_addr)
            # While the fleet waits for the reset, the next answer it gets will be a secondary
            # limit: the first pull request's commits asked for after the reset.
            time.sleep(max(0.0, reset_at - 3 - time.time()))
            fake.faults.secondary_limit(r"/commits$", retry_after=RETRY_AFTER)
            finished = _wait_all(processes.scheduler_addr, runs)
        finally:
            seen.stop.set()
            watcher.join(10)
        requests = fake.requests

    assert [run.state for run in finished] == [runs_pb2.RUN_STATE_SUCCEEDED] * CRAWLERS
    outputs: list[dict[str, Any]] = [dict(run.output) for run in finished]
    assert sorted(name for o in outputs for name in o["repositories_fetched"]) == REPOSITORIES
    assert {owner for o in outputs for owner in dict(o["github_owners"]).values()} == {OWNER}
    # One run per crawler (one slot each): the four processes all took part.
    crawlers = [s for s in processes.started if s.command == "crawler"]
    assert all('"attempt.started"' in s.log.read_text() for s in crawlers)

    # Primary: once the shared row said the budget is spent, nothing more was sent until the
    # reset; only requests that had taken their unit (and a fleet slot) before can arrive just
    # after it — at most one per slot, within a second. GitHub refuses at most those: the row
    # counts down from GitHub's last answered header, so it can lag GitHub's own count by the
    # requests in flight, never by more (one such refusal was seen in 1 of ~6 runs).
    assert seen.spent_at is not None
    assert [r for r in requests if seen.spent_at + IN_FLIGHT < r.at < reset_at] == []
    assert len([r for r in requests if seen.spent_at < r.at < reset_at]) <= FLEET
    assert len([r for r in requests if r.status == 403 and "commits" not in r.path]) <= FLEET
    assert any(r.at >= reset_at for r in requests)

    # Secondary: once the pause was in the row, nobody sent before it passed (again, only what
    # was already under way).
    assert seen.paused is not None
    known, until = seen.paused
    assert until - known <= RETRY_AFTER + 1
    assert [r for r in requests if known + IN_FLIGHT < r.at < until] == []
    assert len([r for r in requests if known < r.at < until]) <= FLEET
    assert any(r.at >= until for r in requests)

    # Four crawlers of up to four requests each, never more than four in flight together.
    assert most_in_flight(requests) <= FLEET


def _trigger_all(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        stub = SchedulerServiceStub(channel)
        return [
            stub.TriggerRun(
                spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(repositories=[name]))
            ).run.id
            for name in REPOSITORIES
        ]


def _wait_all(address: str, run_ids: list[str], timeout: float = 180.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = SchedulerServiceStub(channel)
        while True:
            runs = [stub.GetRun(spb.GetRunRequest(run_id=r)).run for r in run_ids]
            if all(run.state in TERMINAL for run in runs) or time.monotonic() > deadline:
                return runs
            time.sleep(0.5)
