"""Fan-out benchmark: one crawl run of 40 repositories against 40 separate runs, on a fleet.

    .venv/bin/python bench/bench_fanout.py [--reps 5] [--repos 40] [--latency 0.05]

A `ghpulse scheduler` and two `ghpulse crawler`s with 4 slots each (processes; both stores on
PostgreSQL at 127.0.0.1:5432), crawling a fake GitHub (in this process) that answers every
request after `--latency` seconds. The organization holds `--repos` repositories of a few pull
requests each. Each repetition times, in alternating order (a busy machine slows both alike):
- one run: TriggerRun of a crawl of every repository, until its (parent) run ends;
- separate runs: one TriggerRun per repository, until the last of them ends.
Both crawl with `refresh` (no watermark, no ETag: the same requests every time). Reported: the
medians over the repetitions and the ratio of the medians (target: one run within 1.3x).
Writes bench/results/fanout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _procs
import grpc
import psycopg

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2_grpc as sched_grpc
from ghpulse.testing.fake_github import Dataset, FakeGitHub, shapes

QUICK_ARGS = ("--reps", "3")
RESULTS = Path(__file__).resolve().parent / "results" / "fanout.json"
PG = "postgresql://postgres@127.0.0.1:5432"
ORG = "bench-fanout"
TERMINAL = {runs_pb2.RUN_STATE_SUCCEEDED, runs_pb2.RUN_STATE_FAILED, runs_pb2.RUN_STATE_CANCELLED}
START = datetime(2024, 1, 1, tzinfo=UTC)


def dataset(repos: int, pulls: int) -> Dataset:
    """`repos` repositories of `pulls` merged pull requests, each with a review and a commit."""
    ds = Dataset()
    for index in range(repos):
        created = shapes.iso(START + timedelta(days=index))
        ds.add_repository(shapes.repository(ORG, f"repo-{index:02d}", created_at=created))
        name = f"{ORG}/repo-{index:02d}"
        for number in range(1, pulls + 1):
            at = shapes.iso(START + timedelta(days=30 + index, hours=number))
            commit = shapes.commit(
                name,
                shapes.sha(name, number),
                message=f"Fix #{number + 100}",
                author_name="Dev",
                author_email="dev@example.com",
                author_date=at,
            )
            pr = ds.add_pull(
                name,
                number=number,
                body=f"Closes #{number + 100}",
                created_at=at,
                updated_at=at,
                state="closed",
                closed_at=at,
                merged_at=at,
                commits=[commit],
            )
            review = shapes.review(
                pr, reviewer=shapes.user("reviewer"), state="APPROVED", submitted_at=at
            )
            ds.require(name).reviews[number] = [review]
    return ds


def create_database(prefix: str) -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{PG}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_fleet(tmp: Path, github: str, scheduler_db: str, crawler_db: str) -> list[_procs.Service]:
    base = {**os.environ, "GHPULSE_LOG_LEVEL": "warning"}
    subprocess.run(
        [str(_procs.BIN / "ghpulse"), "migrate", "crawler"],
        env={**base, "GHPULSE_CRAWLER_DB": crawler_db},
        check=True,
        capture_output=True,
    )
    address = f"127.0.0.1:{_procs.free_port()}"
    scheduler_env = {
        "GHPULSE_SCHEDULER_DB": scheduler_db,
        "GHPULSE_SCHEDULER_LISTEN": address,
        "GHPULSE_LOG_LEVEL": "warning",
    }
    services = [_procs.Service("scheduler", address, scheduler_env, tmp).start()]
    for name in ("crawler-a", "crawler-b"):
        work = tmp / name
        work.mkdir()
        crawler_address = f"127.0.0.1:{_procs.free_port()}"
        env = {
            "GHPULSE_CRAWLER_LISTEN": crawler_address,
            "GHPULSE_CRAWLER_DB": crawler_db,
            "GHPULSE_CRAWLER_MIGRATE": "false",
            "GHPULSE_SCHEDULER_ADDR": address,
            "GHPULSE_CRAWLER_ID": name,
            "GHPULSE_CRAWLER_SLOTS": "4",
            "GHPULSE_GITHUB_API_URL": github,
            "GHPULSE_EXPORT_DIR": str(tmp / "exports"),
            "GHPULSE_LOG_LEVEL": "warning",
        }
        services.append(_procs.Service("crawler", crawler_address, env, work).start())
        _procs._wait_connected(address, name)
    return services


def one_run(stub: sched_grpc.SchedulerServiceStub, names: list[str]) -> float:
    started = time.perf_counter()
    job = runs_pb2.CrawlJob(repositories=names, refresh=True)
    run_id = stub.TriggerRun(pb2.TriggerRunRequest(crawl=job), timeout=30).run.id
    for message in stub.WatchRun(pb2.WatchRunRequest(run_id=run_id), timeout=600):
        if message.HasField("snapshot") and message.snapshot.state in TERMINAL:
            break
        if message.event.state_changed.state in TERMINAL:
            break
    seconds = time.perf_counter() - started
    run = stub.GetRun(pb2.GetRunRequest(run_id=run_id), timeout=30).run
    assert run.state == runs_pb2.RUN_STATE_SUCCEEDED, run.error
    assert run.children_total == len(names)
    return seconds


def separate_runs(stub: sched_grpc.SchedulerServiceStub, names: list[str], tag: str) -> float:
    started = time.perf_counter()
    for name in names:
        job = runs_pb2.CrawlJob(repositories=[name], refresh=True)
        stub.TriggerRun(pb2.TriggerRunRequest(crawl=job, labels={"bench": tag}), timeout=30)
    query = pb2.ListRunsRequest(labels={"bench": tag}, states=sorted(TERMINAL), page_size=500)
    deadline = started + 600
    while len(runs := stub.ListRuns(query, timeout=30).runs) < len(names):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"separate runs {tag}: {len(runs)} of {len(names)} ended")
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    assert all(run.state == runs_pb2.RUN_STATE_SUCCEEDED for run in runs)
    return seconds


def measure(reps: int, repos: int, pulls: int, latency: float) -> dict[str, object]:
    names = [f"{ORG}/repo-{index:02d}" for index in range(repos)]
    singles: list[float] = []
    separates: list[float] = []
    scheduler_name, scheduler_db = create_database("ghp_bench_fo_sched")
    crawler_name, crawler_db = create_database("ghp_bench_fo_crawl")
    try:
        # Kept when the benchmark fails: the services' logs are in it.
        tmp = tempfile.mkdtemp(prefix="bench-fanout-")
        # A budget that never runs out: the crawlers would otherwise wait for GitHub's reset.
        fake = FakeGitHub(dataset(repos, pulls), latency=latency, rate_limit=10**9)
        with fake as github:
            services = start_fleet(Path(tmp), github.url, scheduler_db, crawler_db)
            try:
                with grpc.insecure_channel(services[0].address) as channel:
                    stub = sched_grpc.SchedulerServiceStub(channel)
                    separate_runs(stub, names, "warmup")  # first sweeps: the rest is refresh
                    for rep in range(reps):
                        order = (0, 1) if rep % 2 == 0 else (1, 0)
                        for which in order:
                            if which == 0:
                                singles.append(one_run(stub, names))
                            else:
                                separates.append(separate_runs(stub, names, f"rep-{rep}"))
                        print(
                            f"rep {rep}: {singles[-1]:.2f} s / {separates[-1]:.2f} s",
                            file=sys.stderr,
                        )
            finally:
                for service in reversed(services):
                    service.stop()
        shutil.rmtree(tmp)
    finally:
        drop_database(scheduler_name)
        drop_database(crawler_name)
    single, separate = statistics.median(singles), statistics.median(separates)
    return {
        "reps": reps,
        "repositories": repos,
        "pulls_per_repository": pulls,
        "latency_s": latency,
        "one_run_s": singles,
        "separate_runs_s": separates,
        "one_run_median_s": single,
        "separate_runs_median_s": separate,
        "ratio": single / separate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--repos", type=int, default=40)
    parser.add_argument("--pulls", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    result = measure(args.reps, args.repos, args.pulls, args.latency)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"#### Fan-out: {args.repos} repositories, {args.latency * 1000:g} ms GitHub latency")
    print()
    print("| measure (2 crawlers x 4 slots) | median | runs |")
    print("|---|---|---|")
    for label, key in (("one crawl run of all", "one_run_s"), ("separate runs", "separate_runs_s")):
        values = result[key]
        assert isinstance(values, list)
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {label} | {statistics.median(values):.2f} s | {shown} |")
    print(f"| ratio one / separate | {result['ratio']:.2f}x | target <= 1.3x |")


if __name__ == "__main__":
    main()
