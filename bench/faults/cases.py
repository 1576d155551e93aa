"""One case: a fresh cluster crawls the sample while one fault strikes (or none, for the
baseline), then the run, its events, the crawled rows and the exports are checked."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub
from faults.catalog import Fault
from faults.cluster import Cluster, FakeGitHubProcess
from faults.observe import Watcher, crawled_rows, event_problems, exports, stored_events
from faults.proxy import TcpProxy
from faults.strike import strike, wait_until

#: Three of the sample's four repositories (162 PRs; one archived): long enough to strike each step.
REPOSITORIES = ["ghpulse-demo/infra", "ghpulse-demo/legacy", "ghpulse-demo/web"]
RUN_TIMEOUT = 120.0


@dataclass
class Outcome:
    """What one case saw; `data` (rows and exports) is compared with the baseline's."""

    state: str = ""
    duration: float = 0.0
    attempts: int = 0
    at: float | None = None
    phase: str = ""
    action: str = ""
    problems: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        fields = ("state", "duration", "attempts", "at", "phase", "action", "problems")
        return {name: getattr(self, name) for name in fields}


def trigger(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        request = spb.TriggerRunRequest(crawl=runs_pb2.CrawlJob(repositories=REPOSITORIES))
        answer = SchedulerServiceStub(channel).TriggerRun(request, timeout=30, wait_for_ready=True)
    return str(answer.run.id)


def run_case(
    tmp: Path,
    backend: str,
    github: FakeGitHubProcess,
    fault: Fault | None,
    strike_at: float | None,
    proxy: TcpProxy | None = None,
) -> Outcome:
    """Crawl the sample on a fresh `backend` cluster; `fault` strikes `strike_at` seconds after
    the trigger (a storm is scheduled before it)."""
    tmp.mkdir(parents=True)
    pg_port = proxy.port if proxy is not None else 5432
    cluster = Cluster(tmp, backend, github.url, pg_port)
    outcome = Outcome()
    try:
        _crawl(cluster, github, fault, strike_at, proxy, outcome)
    except Exception as exc:  # a case that breaks is a case not survived, not a broken suite
        outcome.problems.append(f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        cluster.close()
    return outcome


def _crawl(
    cluster: Cluster,
    github: FakeGitHubProcess,
    fault: Fault | None,
    strike_at: float | None,
    proxy: TcpProxy | None,
    outcome: Outcome,
) -> None:
    cluster.start_scheduler()
    cluster.start_crawler("crawler-0")
    github.control("DELETE")
    if fault is not None and fault.storm:
        github.control("POST", fault.storm)
    started = time.monotonic()
    run_id = trigger(cluster.scheduler_addr)
    watcher = Watcher(cluster.scheduler_addr, run_id, RUN_TIMEOUT)
    watcher.start()
    if fault is not None and strike_at is not None:
        wait_until(started + strike_at)
        outcome.at, outcome.phase = round(strike_at, 3), watcher.phase()
        outcome.action = strike(fault, cluster, proxy, restarts=0)
    watcher.join(RUN_TIMEOUT)
    outcome.duration = round(time.monotonic() - started, 3)
    run, events = stored_events(cluster.scheduler_addr, run_id)
    outcome.state = runs_pb2.RunState.Name(run.state)
    outcome.attempts = run.attempt
    outcome.problems += event_problems(watcher, events)
    files, stray = exports(cluster.exports)
    if stray:
        outcome.problems.append(f"stray files among the exports: {stray[:5]}")
    outcome.data = {"rows": crawled_rows(cluster.crawler_db_direct), "exports": files}


def compare(outcome: Outcome, baseline: Outcome) -> None:
    """Add to `outcome.problems` every difference from the fault-free crawl."""
    if outcome.state != "RUN_STATE_SUCCEEDED":
        outcome.problems.append(f"run ended {outcome.state}")
    if not outcome.data:
        return
    rows, expected = outcome.data["rows"], baseline.data["rows"]
    for table, want in expected.items():
        got = rows.get(table, [])
        if len(set(got)) != len(got):
            outcome.problems.append(f"{table}: duplicate rows")
        if got != want:
            outcome.problems.append(f"{table}: {len(got)} rows differ from {len(want)} expected")
    if outcome.data["exports"] != baseline.data["exports"]:
        outcome.problems.append("exports differ from the fault-free crawl")


def draw(rng: random.Random, duration: float) -> float:
    """A kill moment uniform over the whole fault-free run."""
    return rng.uniform(0.0, duration)
