"""Schedules across replicas: 1,000 schedules due at the same instant, two `ghpulse scheduler`
processes on one PostgreSQL database, no crawler.

    .venv/bin/python bench/bench_schedules.py [--interval 10] [--ticks 4] [--reps 3]
        [--code DIR --label baseline]

The schedules tick every `--interval` seconds (an every-N-seconds interval schedule stands in for
a minute cron: the same work per tick, N times more often), all anchored to the same instant,
jitter 0, overlap SKIP, one repository each. Each repetition: a fresh database, both processes
started the way the README starts them, the 1,000 schedules created over gRPC, one warm-up tick,
then `--ticks` measured ticks. Per repetition, read from the database after both processes
stopped:
- lag, run created - nominal time (started firings) and firing settled - nominal time (every
  firing: the outcome is recorded after the run was created or joined), p50/p99;
- deadlocks (`pg_stat_database.deadlocks`), firings per schedule tick (must be exactly one, none
  missed or pending), runs per schedule tick (at most one);
- database transactions (commits + rollbacks of the database, every process and background task
  included) from half an interval before the first measured tick to the processes' exit, per
  schedule tick.
`--code DIR` runs the processes from another source tree (e.g. `git archive <commit>` of the
baseline) through PYTHONPATH. Raw results: bench/results/schedules-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import _procs
import grpc
import psycopg
from _report import percentile
from google.protobuf import duration_pb2, timestamp_pb2

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as spb
from common.proto.ghpulse.v1 import schedules_pb2 as sch
from common.proto.ghpulse.v1.scheduler_service_pb2_grpc import SchedulerServiceStub

RESULTS = Path(__file__).resolve().parent / "results"
ADMIN = os.environ.get("GHPULSE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
#: PostgreSQL flushes a busy backend's statistics within a second, an idle one's within 10 s.
STATS_SETTLE = 11.0
#: Generous time to create one schedule over gRPC (the first tick is planned after them all).
CREATE_SECONDS = 0.03

#: The run of `bench/all.py` (its registry): issue 10's 1,000 schedules due at once on 2
#: replicas, jitter 0, 2 measured ticks 30 s apart, one repetition (~2 min here).
QUICK_ARGS = ("--schedules", "1000", "--interval", "30", "--ticks", "2", "--reps", "1")


def _admin(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(f"{ADMIN}/postgres", autocommit=True) as conn:
        cursor = conn.execute(cast(Any, sql), params)
        return cursor.fetchall() if cursor.description else []


def _stats(db: str) -> tuple[int, int]:
    """(transactions, deadlocks) of database `db` so far."""
    [(commits, rollbacks, deadlocks)] = _admin(
        "SELECT xact_commit, xact_rollback, deadlocks FROM pg_stat_database WHERE datname = %s", db
    )
    return commits + rollbacks, deadlocks


def _scheduler(tmp: Path, name: str, url: str, code: str | None) -> _procs.Service:
    address = f"127.0.0.1:{_procs.free_port()}"
    env = {
        "GHPULSE_SCHEDULER_LISTEN": address,
        "GHPULSE_SCHEDULER_DB": url,
        "GHPULSE_SCHEDULER_ID": name,
        "GHPULSE_SCHEDULER_MIGRATE": "false",
        "GHPULSE_LOG_LEVEL": "info",
    }
    if code:
        env["PYTHONPATH"] = code
    workdir = tmp / name
    workdir.mkdir()
    return _procs.Service("scheduler", address, env, workdir).start()


def _schedule(i: int, interval: int, start: datetime) -> spb.CreateScheduleRequest:
    anchor = timestamp_pb2.Timestamp()
    anchor.FromDatetime(start)
    schedule = sch.Schedule(
        interval=duration_pb2.Duration(seconds=interval),
        start_time=anchor,
        jitter=duration_pb2.Duration(seconds=0),
        template=sch.ScheduleTemplate(crawl=runs_pb2.CrawlJob(repositories=[f"bench/r{i:04d}"])),
    )
    return spb.CreateScheduleRequest(schedule_id=f"bench-{i:04d}", schedule=schedule)


def _create_one(stub: SchedulerServiceStub, request: spb.CreateScheduleRequest) -> None:
    # The baseline's CreateSchedule fails now and then under concurrent creations (INTERNAL):
    # creation is not what is measured, so it is retried.
    for _attempt in range(5):
        try:
            stub.CreateSchedule(request, timeout=60)
            return
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                return
    raise RuntimeError(f"could not create {request.schedule_id}")


def _create(address: str, count: int, interval: int, start: datetime) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = SchedulerServiceStub(channel)
        with ThreadPoolExecutor(4) as pool:
            requests = [_schedule(i, interval, start) for i in range(count)]
            list(pool.map(lambda request: _create_one(stub, request), requests))


def _next_tick(after: datetime, interval: int) -> datetime:
    k = math.ceil((after - ANCHOR).total_seconds() / interval)
    return ANCHOR + timedelta(seconds=k * interval)


def _sleep_until(when: datetime) -> None:
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))


def _settled(url: str, tick: datetime) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM schedule_firings "
            "WHERE nominal_time = %s AND outcome <> 'pending'",
            (tick,),
        ).fetchone()
    return int(row[0]) if row else 0


def _tick(url: str, tick: datetime, args: argparse.Namespace) -> None:
    """Wait for `tick` and for its firings to settle; with `--finish-runs`, then end every run
    (as a fleet that crawled them would), so that the next tick creates runs again."""
    _sleep_until(tick)
    deadline = time.monotonic() + args.settle_timeout
    while _settled(url, tick) < args.schedules and time.monotonic() < deadline:
        time.sleep(0.2)
    if args.finish_runs:
        with psycopg.connect(url) as conn:
            conn.execute(
                "UPDATE runs SET state = 'succeeded', slot = NULL, finished_at = now() "
                "WHERE slot IS NOT NULL"
            )


def _firings(url: str, first: datetime, last: datetime) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT f.schedule_id, f.nominal_time, f.outcome, f.fire_time, f.scheduler_id, "
            "r.created_at FROM schedule_firings f LEFT JOIN runs r "
            "ON r.id = f.run_id AND f.outcome = 'started' "
            "WHERE f.nominal_time BETWEEN %s AND %s",
            (first, last),
        ).fetchall()


def _runs_per_tick(url: str, first: datetime, last: datetime) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM runs WHERE "
            "nominal_time BETWEEN %s AND %s GROUP BY schedule_id, nominal_time) t",
            (first, last),
        ).fetchone()
    return int(row[0]) if row else 0


def repetition(args: argparse.Namespace) -> dict[str, Any]:
    db = f"ghp_hs_bench_{uuid.uuid4().hex[:8]}"
    url = f"{ADMIN}/{db}"
    _admin(f'CREATE DATABASE "{db}"')
    services: list[_procs.Service] = []
    env = {
        **os.environ,
        "GHPULSE_SCHEDULER_DB": url,
        **({"PYTHONPATH": args.code} if args.code else {}),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="ghpulse-bench-hs-") as tmp_dir:
            tmp = Path(tmp_dir)
            subprocess.run(
                [str(_procs.BIN / "ghpulse"), "migrate", "scheduler"],
                env=env,
                check=True,
                capture_output=True,
                cwd=tmp,
            )
            services = [_scheduler(tmp, name, url, args.code) for name in ("a", "b")]
            # The first tick of every schedule is the warm-up tick: it creates the runs.
            lead = STATS_SETTLE + args.schedules * CREATE_SECONDS
            warm = _next_tick(datetime.now(UTC) + timedelta(seconds=lead), args.interval)
            _create(services[0].address, args.schedules, args.interval, warm)
            if datetime.now(UTC) > warm - timedelta(seconds=STATS_SETTLE):
                raise RuntimeError("creating the schedules took too long; raise CREATE_SECONDS")
            ticks = [warm + timedelta(seconds=args.interval * k) for k in range(args.ticks + 1)]
            _tick(url, ticks[0], args)
            _sleep_until(ticks[1] - timedelta(seconds=args.interval / 2))
            before, deadlocks_before = _stats(db)
            for tick in ticks[1:]:
                _tick(url, tick, args)
            for service in services:
                service.stop()
            logs = "".join(s.log.read_text(errors="replace") for s in services)
            time.sleep(STATS_SETTLE)  # the closed backends' statistics reach pg_stat_database
            after, deadlocks_after = _stats(db)
            rows = _firings(url, ticks[0], ticks[-1])
            max_runs = _runs_per_tick(url, ticks[0], ticks[-1])
    finally:
        for service in services:
            service.stop()
        _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    return _summarize(
        args, rows, ticks, after - before, deadlocks_after - deadlocks_before, max_runs, logs
    )


def _summarize(
    args: argparse.Namespace,
    rows: list[tuple[Any, ...]],
    ticks: list[datetime],
    transactions: int,
    deadlocks: int,
    max_runs: int,
    logs: str,
) -> dict[str, Any]:
    settle = [(fire - nominal).total_seconds() for _s, nominal, _o, fire, _r, _c in rows if fire]
    created = [(c - nominal).total_seconds() for _s, nominal, o, _f, _r, c in rows if c]
    per_tick = Counter((s, nominal) for s, nominal, *_ in rows)
    outcomes = Counter(o for _s, _n, o, *_ in rows)
    by_tick_settle = [
        max((f - n).total_seconds() for _s, n, _o, f, _r, _c in rows if n == t and f)
        if rows
        else math.nan
        for t in ticks
    ]
    measured = args.ticks * args.schedules
    return {
        "ticks": [t.isoformat() for t in ticks],
        "firings": len(rows),
        "expected_firings": len(ticks) * args.schedules,
        "firings_per_schedule_tick": sorted(set(per_tick.values())),
        "outcomes": dict(outcomes),
        "max_runs_per_schedule_tick": max_runs,
        "by_replica": dict(Counter(r for *_x, r, _c in rows)),
        "settle_lag_p50": percentile(settle, 50),
        "settle_lag_p99": percentile(settle, 99),
        "settle_lag_max": max(settle, default=math.nan),
        "created_lag_p50": percentile(created, 50),
        "created_lag_p99": percentile(created, 99),
        "tick_settled_after": by_tick_settle,
        "deadlocks": deadlocks,
        "deadlock_log_lines": logs.lower().count("deadlock"),
        "transactions": transactions,
        "transactions_per_schedule_tick": transactions / measured,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--settle-timeout", type=float, default=120.0)
    parser.add_argument(
        "--finish-runs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="end every run once a tick settled, so that each tick creates its runs (else the "
        "measured ticks only join the warm-up tick's runs)",
    )
    parser.add_argument("--code", default="", help="run the processes from this source tree")
    parser.add_argument("--label", default="hs")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    reps = [repetition(args) for _ in range(args.reps)]
    for rep in reps:
        print(json.dumps({k: v for k, v in rep.items() if k != "ticks"}))
    keys = (
        "settle_lag_p50",
        "settle_lag_p99",
        "created_lag_p50",
        "created_lag_p99",
        "transactions_per_schedule_tick",
        "deadlocks",
    )
    medians = {k: statistics.median(r[k] for r in reps) for k in keys}
    print(json.dumps({"label": args.label, "medians": medians}, indent=1))
    print(f"\n{args.schedules} schedules, 2 replicas, every {args.interval} s, {args.reps} reps\n")
    print("| metric | median | repetitions |")
    print("|---|---:|---|")
    for key in keys:
        each = " · ".join(f"{r[key]:.3g}" for r in reps)
        print(f"| {key} | {medians[key]:.3g} | {each} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"schedules-{args.label}.json"
    out.write_text(
        json.dumps(
            {
                "label": args.label,
                "commit": commit if not args.code else f"tree {args.code}",
                "load_average": os.getloadavg(),
                "args": vars(args),
                "medians": medians,
                "reps": reps,
            },
            indent=1,
            default=str,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
