"""The run store's hot queries against a long history, on PostgreSQL.

    .venv/bin/python bench/bench_hot_queries.py [--finished 1000000] [--reps 5]

In two throw-away databases (`--db-name` + `_empty` / `_history`, dropped at the end) migrated
to head, the second with `--finished` finished runs (INSERT … SELECT generate_series, a label
each):
1. hand-out rate, `--reps` times alternating between the two databases (so a busy machine slows
   both alike; which goes first alternates too): `--pending` pending runs are added and ANALYZEd
   (as autovacuum would), then `--claims` sequential `SqlRunStore.claim` calls (one transaction
   each: FOR UPDATE SKIP LOCKED on the oldest dispatchable run);
2. EXPLAIN (ANALYZE, BUFFERS) of each hot query of `scheduler_service.runs.sql.hot_queries` on the
   database with history.
The bench's sessions commit with synchronous_commit=off (PGOPTIONS): the WAL flush costs the same
with or without history and, on a shared disk, drowns what the history changes.
Prints a markdown summary (the full plans go to stderr) and writes bench/results/hot_queries.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from common.logging import configure
from ghpulse.testing.run_history import add_pending, fill_finished
from scheduler_service.db import migrations
from scheduler_service.runs.sql.hot_queries import explain, hot_queries
from scheduler_service.runs.sql.store import SqlRunStore

RESULTS = Path(__file__).resolve().parent / "results" / "hot_queries.json"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The run of `bench/all.py` (its registry): most of its ~6 min here is filling 1M runs.
QUICK_ARGS = ("--finished", "1000000", "--claims", "300", "--reps", "9")


async def handout_rate(store: SqlRunStore, claims: int) -> float:
    """Claims per second, sequential, each one claiming a run."""
    lease = timedelta(minutes=5)
    start = time.perf_counter()
    for _ in range(claims):
        transition = await store.claim("bench-worker", datetime.now(UTC), lease)
        assert transition.run is not None, "ran out of pending runs"
    return claims / (time.perf_counter() - start)


async def one_rep(store: SqlRunStore, args: argparse.Namespace, tag: str) -> float:
    with store.threads.writer.begin() as conn:
        add_pending(conn, args.pending, tag)
    with store.threads.writer.connect() as conn:
        conn.exec_driver_sql("ANALYZE runs")
        conn.commit()
    return await handout_rate(store, args.claims)


async def bench(urls: tuple[str, str], args: argparse.Namespace) -> dict[str, object]:
    for url in urls:
        migrations.upgrade(url)
    empty, full = (SqlRunStore.open(url) for url in urls)
    try:
        started = time.perf_counter()
        with full.threads.writer.begin() as conn:
            fill_finished(conn, args.finished)
        filled_in = time.perf_counter() - started
        measured: tuple[list[float], list[float]] = ([], [])
        for rep in range(args.reps):
            # Which database goes first alternates: a load that changes within a pair favours
            # neither.
            order = (0, 1) if rep % 2 == 0 else (1, 0)
            for which in order:
                store = (empty, full)[which]
                measured[which].append(await one_rep(store, args, f"r{rep}_"))
        plans = {}
        with full.threads.reader.connect() as conn:
            for query in hot_queries(datetime.now(UTC)):
                plans[query.name] = explain(conn, query.statement, analyze=True)
    finally:
        await empty.close()
        await full.close()
    # Each repetition's pair ran back to back (the same load): the median of their ratios.
    ratio = statistics.median(full / empty for empty, full in zip(*measured, strict=True))
    return {
        "commit": _commit(),
        "finished_runs": args.finished,
        "fill_seconds": round(filled_in, 1),
        "claims_per_rep": args.claims,
        "handout_per_s_empty": [round(r) for r in measured[0]],
        "handout_per_s_with_history": [round(r) for r in measured[1]],
        "handout_ratio_median": round(ratio, 3),
        "target_ratio": 0.9,
        "reached": ratio >= 0.9,
        "plans": plans,
    }


def markdown(result: dict[str, Any]) -> str:
    """The hand-out rates against their target, then each hot query's plan in one line."""
    empty, full = result["handout_per_s_empty"], result["handout_per_s_with_history"]
    reached = "yes" if result["reached"] else "**no**"
    lines = [
        f"{result['finished_runs']:,} finished runs (filled in {result['fill_seconds']:g} s); "
        f"{result['claims_per_rep']} sequential claims per repetition, {len(empty)} repetitions.",
        "",
        "| metric | median | repetitions | target | reached |",
        "|---|---:|---|---|:---:|",
        f"| hand-out rate, empty table | {statistics.median(empty):g}/s "
        f"| {' · '.join(map(str, empty))} | | |",
        f"| hand-out rate, with history | {statistics.median(full):g}/s "
        f"| {' · '.join(map(str, full))} | | |",
        f"| with history / empty (median of the repetitions' ratios) "
        f"| {result['handout_ratio_median']:.2f} | "
        f"| ≥ {result['target_ratio']} | {reached} |",
        "",
        "| hot query (with history) | plan's top node | execution time |",
        "|---|---|---:|",
    ]
    for name, plan in dict(result["plans"]).items():
        lines.append(f"| {name} | {_top_node(plan)} | {_execution_time(plan)} |")
    return "\n".join(lines)


def _top_node(plan: str) -> str:
    nodes = [line.strip().removeprefix("->").strip() for line in plan.splitlines()]
    scans = [n for n in nodes if "Scan" in n] or nodes
    return scans[0].split("  (")[0].replace("|", "\\|") if scans else ""


def _execution_time(plan: str) -> str:
    for line in plan.splitlines():
        if "Execution Time" in line:
            return line.split(":", 1)[1].strip()
    return ""


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def _recreate(names: tuple[str, ...], create: bool) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                admin.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=1_000)
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--db-name", default="ghpulse_bench_hot")
    args = parser.parse_args()
    configure("warning")  # stdout is the report
    os.environ["PGOPTIONS"] = "-c synchronous_commit=off"
    os.environ["GHPULSE_DB_STATEMENT_TIMEOUT"] = "0"
    names = (f"{args.db_name}_empty", f"{args.db_name}_history")
    _recreate(names, create=True)
    try:
        base = ADMIN.rsplit("/", 1)[0]
        result = asyncio.run(bench((f"{base}/{names[0]}", f"{base}/{names[1]}"), args))
    finally:
        _recreate(names, create=False)
    for name, plan in dict(result["plans"]).items():  # type: ignore[call-overload]
        print(f"-- {name}\n{plan}\n", file=sys.stderr)
    print(markdown(result))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
