"""Hot-path benchmark (issue 13): TriggerRun against the health-Check floor, and a crawler under a
trigger flood, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_hotpath.py [--backend sqlite|postgresql] [--reps 3]
        [--window 3] [--code DIR] [--label NAME] [--scheduler-env NAME=VALUE ...]

`--code DIR` runs the scheduler and crawler from another checkout (e.g. main, extracted with
`git archive`) through PYTHONPATH: the baseline, measured by the same client in the same run.

One `ghpulse scheduler`, one `ghpulse crawler` (4 slots, the `noop` job of noop_plugin.py) and
one client process with 32 threads on synchronous channels. Per repetition:
1. flood-only: 32 threads of TriggerRun back to back, no crawler connected -> TriggerRun/s;
2. (crawler connected from here) health Check/s, 32 threads back to back;
3. interleaved: each thread alternates Check and TriggerRun -> p50 of each;
4. flood: 32 threads of TriggerRun back to back -> TriggerRun/s and runs *started* per second
   (read from the database: `started_at` in the window), then the backlog's drain rate.
Medians over repetitions; raw numbers to bench/results/hotpath-<backend>-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _procs
import grpc
from _clients import HEALTH, trigger_request
from grpc_health.v1 import health_pb2_grpc
from sqlalchemy import create_engine, text

from common.db import sync_url
from common.proto.ghpulse.v1 import scheduler_service_pb2_grpc as sched_grpc

THREADS = 32
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

#: The runs of `bench/all.py` (its registry): one repetition of 2 s windows per backend, each
#: printing a markdown table.
QUICK_ARGS = (
    ("--backend", "sqlite", "--reps", "1", "--window", "2", "--markdown"),
    ("--backend", "postgresql", "--reps", "1", "--window", "2", "--markdown"),
)


def _database(backend: str, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp}/scheduler.db"
    name = f"bench_hc_{os.getpid()}"
    with create_engine(sync_url(PG_ADMIN), isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        name = url.rsplit("/", 1)[1]
        with create_engine(sync_url(PG_ADMIN), isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _env(code: str | None) -> dict[str, str]:
    path = [p for p in (code, str(_procs.BENCH), str(_procs.ROOT)) if p]
    return {"PYTHONPATH": os.pathsep.join(path)}


def start_scheduler(
    url: str, tmp: Path, code: str | None, extra: dict[str, str] | None = None
) -> _procs.Service:
    env = {"GHPULSE_SCHEDULER_DB": url, "GHPULSE_LOG_LEVEL": "warning", **_env(code)}
    env.update(extra or {})
    subprocess.run(
        [str(_procs.BIN / "ghpulse"), "migrate", "scheduler"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    address = f"127.0.0.1:{_procs.free_port()}"
    env["GHPULSE_SCHEDULER_LISTEN"] = address
    return _procs.Service("scheduler", address, env, tmp).start("--no-migrate")


def start_crawler(tmp: Path, scheduler: str, code: str | None) -> _procs.Service:
    address = f"127.0.0.1:{_procs.free_port()}"
    env = {
        "GHPULSE_CRAWLER_LISTEN": address,
        "GHPULSE_CRAWLER_DB": f"sqlite:///{tmp}/crawler.db",
        "GHPULSE_SCHEDULER_ADDR": scheduler,
        "GHPULSE_CRAWLER_PLUGINS": "noop_plugin:register",
        "GHPULSE_CRAWLER_ID": "bench-crawler",
        "GHPULSE_CRAWLER_SLOTS": "4",
        "GHPULSE_LOG_LEVEL": "warning",
        **_env(code),
    }
    crawler = _procs.Service("crawler", address, env, tmp).start()
    _procs._wait_connected(scheduler, "bench-crawler")
    return crawler


def _threads(work: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * THREADS
    barrier = threading.Barrier(THREADS)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def rate(channel: grpc.Channel, kind: str, window: float) -> float:
    """Calls per second of `kind` by 32 threads back to back over `window` seconds."""
    call = _call(channel, kind)

    def work(_i: int) -> int:
        end, done = time.monotonic() + window, 0
        while time.monotonic() < end:
            call()
            done += 1
        return done

    return float(sum(_threads(work)) / window)


def interleaved(channel: grpc.Channel, window: float) -> dict[str, float]:
    calls = {kind: _call(channel, kind) for kind in ("health", "trigger")}

    def work(i: int) -> dict[str, list[float]]:
        latencies: dict[str, list[float]] = {"health": [], "trigger": []}
        end, turn = time.monotonic() + window, i % 2
        while time.monotonic() < end:
            kind = ("health", "trigger")[turn]
            start = time.perf_counter()
            calls[kind]()
            latencies[kind].append((time.perf_counter() - start) * 1000)
            turn ^= 1
        return latencies

    per_thread = _threads(work)
    return {
        kind: statistics.median([x for t in per_thread for x in t[kind]])
        for kind in ("health", "trigger")
    }


def _call(channel: grpc.Channel, kind: str) -> Callable[[], object]:
    if kind == "health":
        health = health_pb2_grpc.HealthStub(channel)
        return lambda: health.Check(HEALTH, timeout=30)
    sched = sched_grpc.SchedulerServiceStub(channel)
    return lambda: sched.TriggerRun(trigger_request(), timeout=30)


def started_between(url: str, start: datetime, end: datetime) -> int:
    with create_engine(sync_url(url)).connect() as conn:
        query = text("SELECT count(*) FROM runs WHERE started_at >= :a AND started_at < :b")
        rows = conn.execute(query, {"a": _db_time(url, start), "b": _db_time(url, end)})
        return int(rows.scalar() or 0)


def pending(url: str) -> int:
    with create_engine(sync_url(url)).connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM runs WHERE state IN ('pending', 'running')"))
        return int(rows.scalar() or 0)


def _db_time(url: str, when: datetime) -> Any:
    # SQLite stores naive UTC text; PostgreSQL compares timestamptz.
    return when.replace(tzinfo=None).isoformat(sep=" ") if url.startswith("sqlite") else when


def flood(channel: grpc.Channel, url: str, window: float) -> dict[str, float]:
    start = datetime.now(UTC)
    triggers = rate(channel, "trigger", window)
    end = datetime.now(UTC)
    started = started_between(url, start, end) / window
    backlog, drain_start = pending(url), time.monotonic()
    while pending(url) > 0 and time.monotonic() - drain_start < 120:
        time.sleep(0.2)
    drained = backlog / max(1e-9, time.monotonic() - drain_start)
    return {
        "trigger_per_s": triggers,
        "started_per_s": started,
        "backlog": backlog,
        "drain_per_s": drained,
    }


def measure(
    backend: str, reps: int, window: float, code: str | None, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    raw: dict[str, list[float]] = {}

    def keep(name: str, value: float) -> None:
        raw.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="bench-hc-") as tmp_dir:
        tmp = Path(tmp_dir)
        url = _database(backend, tmp)
        scheduler = start_scheduler(url, tmp, code, extra)
        crawler: _procs.Service | None = None
        try:
            with grpc.insecure_channel(scheduler.address) as channel:
                rate(channel, "trigger", 1.0)  # warm-up
                for _ in range(reps):
                    keep("flood_only_trigger_per_s", rate(channel, "trigger", window))
                crawler = start_crawler(tmp, scheduler.address, code)
                while pending(url) > 0:
                    time.sleep(0.5)
                for _ in range(reps):
                    keep("health_per_s", rate(channel, "health", window))
                    p50 = interleaved(channel, window)
                    keep("health_p50_ms", p50["health"])
                    keep("trigger_p50_ms", p50["trigger"])
                    for name, value in flood(channel, url, window).items():
                        keep(f"flood_{name}", value)
        finally:
            if crawler is not None:
                crawler.stop()
            scheduler.stop()
            _drop(url)
    medians = {name: statistics.median(values) for name, values in raw.items()}
    medians["p50_ratio"] = medians["trigger_p50_ms"] / medians["health_p50_ms"]
    medians["rate_ratio"] = medians["flood_trigger_per_s"] / medians["health_per_s"]
    medians["flood_vs_flood_only"] = (
        medians["flood_trigger_per_s"] / medians["flood_only_trigger_per_s"]
    )
    return {"backend": backend, "reps": reps, "window": window, "raw": raw, "median": medians}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--code", default=None, help="run the services from this checkout")
    parser.add_argument("--label", default="branch")
    parser.add_argument("--markdown", action="store_true", help="print a table, not JSON")
    parser.add_argument(
        "--scheduler-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra scheduler environment, e.g. GHPULSE_SCHEDULER_GROUP_COMMIT=false",
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.scheduler_env)
    result = measure(args.backend, args.reps, args.window, args.code, extra)
    result["scheduler_env"] = extra
    result["label"] = args.label
    out = _procs.BENCH / "results" / f"hotpath-{args.backend}-{args.label}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.markdown:
        print(markdown(result))
    else:
        print(json.dumps(result["median"], indent=1, sort_keys=True))


def markdown(result: dict[str, Any]) -> str:
    rows = [
        ("TriggerRun p50 / health Check p50", "p50_ratio", "{:.2f}"),
        ("TriggerRun/s / health Check/s", "rate_ratio", "{:.2f}"),
        ("runs started/s during the flood (1 crawler, 4 slots)", "flood_started_per_s", "{:.0f}"),
        ("TriggerRun/s during the flood / flood-only", "flood_vs_flood_only", "{:.2f}"),
        ("TriggerRun/s flood-only", "flood_only_trigger_per_s", "{:.0f}"),
        ("runs pending when the flood ends", "flood_backlog", "{:.0f}"),
    ]
    median = result["median"]
    lines = [f"| {result['backend']}, median of {result['reps']} | value |", "|---|---|"]
    lines += [f"| {label} | {fmt.format(median[key])} |" for label, key, fmt in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
