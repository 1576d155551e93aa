"""Cluster benchmark: two `ghpulse scheduler` replicas on one PostgreSQL database, crawlers as
separate processes, clients in this process.

    .venv/bin/python bench/bench_cluster.py [--reps 3] [--calls 60]

Measured (medians over `--reps` repetitions, same- and cross-replica alternated in each so a busy
machine slows both alike):
1. trigger -> first step (the scheduler's stamp on step_started, from the client's send), with the
   only crawler on replica B: TriggerRun sent to B (same replica: claimed in the trigger's own
   transaction) against TriggerRun sent to A (the other replica: B claims on A's NOTIFY);
2. WatchRun delivery (the scheduler's event stamp -> arrival) of a `ticks` run on B's crawler,
   watched on B and on A at once (A reads the events on B's NOTIFY);
3. idle cluster (a crawler on each replica, no runs): database transactions/s per replica
   (pg_stat_database xact_commit delta);
4. 500 idle WatchRun streams (250 per replica) on a running, quiet run: transactions/s;
5. (last, once the crawlers have stopped) TriggerRun/s of 32 client threads back to back, on one
   replica (a channel to A) against two (one channel to `ipv4:A,B` with round-robin, as the
   README tells clients), windows alternated; any error is counted.
Prints a markdown table and writes bench/results/cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _clients
import _procs
import grpc
import psycopg
from _report import percentile

from common.proto.ghpulse.v1 import scheduler_service_pb2 as pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2_grpc as sched_grpc

RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"
#: The run of `bench/all.py` (its registry): ~4 min here.
QUICK_ARGS = ("--reps", "3", "--calls", "40", "--window", "20")
PG = "postgresql://postgres@127.0.0.1:5432"
#: Seconds between the last watcher's snapshot and the measurement window.
SETTLE = 10.0


def start_scheduler(tmp: Path, url: str, name: str) -> _procs.Service:
    address = f"127.0.0.1:{_procs.free_port()}"
    env = {
        "GHPULSE_SCHEDULER_DB": url,
        "GHPULSE_SCHEDULER_LISTEN": address,
        "GHPULSE_SCHEDULER_ID": name,
        "GHPULSE_LOG_LEVEL": "warning",
    }
    return _procs.Service("scheduler", address, env, tmp / name).start("--no-migrate")


def start_crawler(tmp: Path, scheduler: _procs.Service, name: str) -> _procs.Service:
    address = f"127.0.0.1:{_procs.free_port()}"
    env = {
        "GHPULSE_CRAWLER_LISTEN": address,
        "GHPULSE_CRAWLER_DB": f"sqlite:///{tmp / name}/crawler.db",
        "GHPULSE_SCHEDULER_ADDR": scheduler.address,
        "GHPULSE_CRAWLER_PLUGINS": "noop_plugin:register,bench_jobs:register",
        "GHPULSE_CRAWLER_ID": name,
        "GHPULSE_BENCH_GATES": str(tmp / "gates"),
        "GHPULSE_LOG_LEVEL": "warning",
        "PYTHONPATH": os.pathsep.join([str(_procs.BENCH), str(_procs.ROOT)]),
    }
    crawler = _procs.Service("crawler", address, env, tmp / name).start()
    _procs._wait_connected(scheduler.address, name)
    return crawler


# -- 1: trigger -> first step ---------------------------------------------------------------


def first_steps(a: str, b: str, reps: int, calls: int) -> dict[str, list[list[float]]]:
    """Per repetition, `calls` runs triggered on each replica, alternated."""
    out: dict[str, list[list[float]]] = {"same": [], "cross": []}
    with grpc.insecure_channel(a) as ca, grpc.insecure_channel(b) as cb:
        stubs = {
            "same": sched_grpc.SchedulerServiceStub(cb),
            "cross": sched_grpc.SchedulerServiceStub(ca),
        }
        for stub in stubs.values():
            for _ in range(5):
                _clients._one_run(stub)
        for _ in range(reps):
            rep: dict[str, list[float]] = {"same": [], "cross": []}
            for _ in range(calls):
                for where, stub in stubs.items():
                    rep[where].append(_clients._one_run(stub)[0])
            for where in out:
                out[where].append(rep[where])
    return out


# -- 2: WatchRun delivery -------------------------------------------------------------------


async def deliveries(
    a: str, b: str, gates: Path, reps: int, ticks: int
) -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = {"same": [], "cross": []}
    async with grpc.aio.insecure_channel(a) as ca, grpc.aio.insecure_channel(b) as cb:
        stubs = {
            "same": sched_grpc.SchedulerServiceStub(cb),
            "cross": sched_grpc.SchedulerServiceStub(ca),
        }
        for _ in range(reps):
            run = (
                await stubs["same"].TriggerRun(_clients.trigger_request("ticks", ticks=ticks))
            ).run
            ready = asyncio.Semaphore(0)
            watches = {
                w: asyncio.create_task(_latencies(s, run.id, ready)) for w, s in stubs.items()
            }
            for _ in watches:
                await ready.acquire()
            (gates / run.id).touch()
            for where, task in watches.items():
                out[where].append(await task)
    return out


async def _latencies(
    stub: sched_grpc.SchedulerServiceAsyncStub, run_id: str, ready: asyncio.Semaphore
) -> list[float]:
    latencies: list[float] = []
    replayed = 0
    async for message in stub.WatchRun(pb2.WatchRunRequest(run_id=run_id)):
        arrived = time.time_ns()
        if message.WhichOneof("message") == "snapshot":
            replayed = message.snapshot.last_seq
            ready.release()
            continue
        if message.event.seq > replayed:
            latencies.append((arrived - message.event.time.ToNanoseconds()) / 1e6)
    return latencies


# -- 5: TriggerRun/s on one replica and on two ------------------------------------------------

THREADS = 32


def trigger_rate(target: str, window: float) -> tuple[float, int]:
    """TriggerRun/s of `THREADS` threads back to back on one channel to `target` over `window`
    seconds, and the number of calls that failed."""
    options = [("grpc.lb_policy_name", "round_robin")]
    done, errors = [0] * THREADS, [0] * THREADS
    barrier = threading.Barrier(THREADS)
    with grpc.insecure_channel(target, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = sched_grpc.SchedulerServiceStub(channel)

        def work(i: int) -> None:
            barrier.wait()
            end = time.monotonic() + window
            while time.monotonic() < end:
                try:
                    stub.TriggerRun(_clients.trigger_request(), timeout=30)
                    done[i] += 1
                except grpc.RpcError:
                    errors[i] += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sum(done) / window, sum(errors)


def replica_rates(a: str, b: str, reps: int, window: float) -> dict[str, list[float] | int]:
    """Per repetition, TriggerRun/s on A alone, then on A and B round-robin."""
    targets = {"one": a, "two": f"ipv4:{a},{b}"}
    trigger_rate(targets["two"], 1.0)  # warm both replicas up
    rates: dict[str, list[float]] = {"one": [], "two": []}
    errors = 0
    for _ in range(reps):
        for name, target in targets.items():
            per_s, failed = trigger_rate(target, window)
            rates[name].append(round(per_s, 1))
            errors += failed
    return {**rates, "errors": errors}


# -- 3 + 4: transactions --------------------------------------------------------------------


def xacts_per_s(db_name: str, window: float) -> float:
    """Committed + rolled back transactions/s of the database over `window` seconds (this
    measuring session's own two reads excluded)."""

    def read() -> int:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                (db_name,),
            ).fetchone()
        assert row is not None
        return int(row[0])

    before = read()
    time.sleep(window)
    return (read() - before) / window


async def idle_watchers(
    a: str, b: str, db_name: str, count: int, window: float, gates: Path
) -> float:
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(addr, options=options) for addr in (a, b) for _ in range(5)
    ]
    run = (
        await sched_grpc.SchedulerServiceStub(channels[0]).TriggerRun(
            _clients.trigger_request("ticks", ticks=1)
        )
    ).run
    ready = asyncio.Semaphore(0)

    async def watch(channel: grpc.aio.Channel) -> None:
        async for message in sched_grpc.SchedulerServiceStub(channel).WatchRun(
            pb2.WatchRunRequest(run_id=run.id)
        ):
            if message.WhichOneof("message") == "snapshot":
                ready.release()

    tasks = [asyncio.create_task(watch(channels[i % len(channels)])) for i in range(count)]
    for _ in tasks:
        await ready.acquire()
    # Each stream reads the log once after its snapshot: let those reads end before measuring.
    await asyncio.sleep(SETTLE)
    rate = await asyncio.to_thread(xacts_per_s, db_name, window)
    (gates / run.id).touch()
    await asyncio.gather(*tasks)
    for channel in channels:
        await channel.close(None)
    return rate


def summary(samples: dict[str, list[list[float]]]) -> dict[str, float]:
    result = {}
    for where, reps in samples.items():
        for q in (50, 99):
            result[f"{where}_p{q}_ms"] = round(statistics.median(percentile(r, q) for r in reps), 2)
    return result


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    url = f"{PG}/{args.db_name}"
    (tmp / "gates").mkdir()
    for name in ("a", "b", "crawler-a", "crawler-b"):
        (tmp / name).mkdir()
    subprocess.run(
        [str(_procs.BIN / "ghpulse"), "migrate", "scheduler"],
        env={**os.environ, "GHPULSE_SCHEDULER_DB": url},
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    a = start_scheduler(tmp, url, "a")
    b = start_scheduler(tmp, url, "b")
    services = [a, b]
    try:
        services.append(start_crawler(tmp, b, "crawler-b"))
        first = summary(first_steps(a.address, b.address, args.reps, args.calls))
        watch = summary(asyncio.run(deliveries(a.address, b.address, tmp / "gates", args.reps, 30)))
        services.append(start_crawler(tmp, a, "crawler-a"))
        # Backends report their transactions to pg_stat_database up to ~10 s late: let the
        # earlier phases' reports land before the idle window.
        time.sleep(SETTLE)
        idle = [xacts_per_s(args.db_name, args.window) / 2 for _ in range(args.reps)]
        watchers = [
            asyncio.run(
                idle_watchers(a.address, b.address, args.db_name, 500, args.window, tmp / "gates")
            )
            for _ in range(args.reps)
        ]
        # Last, with no crawler connected: the runs it leaves pending would queue ahead of the
        # other phases' runs.
        for crawler in services[2:]:
            crawler.stop()
        del services[2:]
        triggers = replica_rates(a.address, b.address, args.reps, args.flood_window)
    finally:
        for service in reversed(services):
            service.stop()
    return {
        "trigger_rate": triggers,
        "trigger_to_first_step": first,
        "watch_delivery": watch,
        "idle_xacts_per_s_per_replica": [round(x, 2) for x in idle],
        "idle_500_watchers_xacts_per_s": [round(x, 2) for x in watchers],
    }


def targets(result: dict[str, Any]) -> dict[str, bool]:
    first, watch = result["trigger_to_first_step"], result["watch_delivery"]
    return {
        "first_step_cross_p50": first["cross_p50_ms"] <= first["same_p50_ms"] + 5,
        "first_step_cross_p99": first["cross_p99_ms"] <= 50,
        "watch_cross_p50": watch["cross_p50_ms"] <= watch["same_p50_ms"] + 5,
        "watch_cross_p99": watch["cross_p99_ms"] <= 50,
        "idle_per_replica": statistics.median(result["idle_xacts_per_s_per_replica"]) <= 2,
        "idle_500_watchers": statistics.median(result["idle_500_watchers_xacts_per_s"]) <= 5,
        "two_replicas_rate": _rate_ratio(result["trigger_rate"]) >= 1.0
        and result["trigger_rate"]["errors"] == 0,
    }


def _rate_ratio(rates: dict[str, Any]) -> float:
    """Median over repetitions of two replicas' TriggerRun/s ÷ one replica's."""
    return float(statistics.median(t / o for o, t in zip(rates["one"], rates["two"], strict=True)))


def markdown(result: dict[str, Any]) -> str:
    """The table of a result: same against other replica, then the transaction counts."""
    first, watch, reached = (
        result["trigger_to_first_step"],
        result["watch_delivery"],
        result["targets"],
    )
    idle = statistics.median(result["idle_xacts_per_s_per_replica"])
    watchers = statistics.median(result["idle_500_watchers_xacts_per_s"])

    def mark(key: str) -> str:
        return "yes" if reached[key] else "**no**"

    def latency(row: dict[str, float], q: int) -> str:
        return f"{row[f'same_p{q}_ms']:.1f} ms | {row[f'cross_p{q}_ms']:.1f} ms"

    per_rep = " · ".join(f"{x:g}" for x in result["idle_xacts_per_s_per_replica"])
    rates = result["trigger_rate"]
    watch_reps = " · ".join(f"{x:g}" for x in result["idle_500_watchers_xacts_per_s"])
    lines = [
        f"Two `ghpulse scheduler` replicas on one PostgreSQL database; medians of {result['reps']} "
        "repetitions (same- and other-replica calls alternated within each).",
        "",
        "| metric | same replica | other replica | target | reached |",
        "|---|---:|---:|---|:---:|",
        f"| trigger → first step, p50 | {latency(first, 50)} | other ≤ same + 5 ms "
        f"| {mark('first_step_cross_p50')} |",
        f"| trigger → first step, p99 | {latency(first, 99)} | other ≤ 50 ms "
        f"| {mark('first_step_cross_p99')} |",
        f"| WatchRun delivery, p50 | {latency(watch, 50)} | other ≤ same + 5 ms "
        f"| {mark('watch_cross_p50')} |",
        f"| WatchRun delivery, p99 | {latency(watch, 99)} | other ≤ 50 ms "
        f"| {mark('watch_cross_p99')} |",
        "",
        "| metric | median | repetitions | target | reached |",
        "|---|---:|---|---|:---:|",
        f"| idle cluster, transactions/s per replica | {idle:g} | {per_rep} | ≤ 2 "
        f"| {mark('idle_per_replica')} |",
        f"| 500 idle watchers (250 per replica), transactions/s of both replicas | {watchers:g} "
        f"| {watch_reps} | ≤ 5 | {mark('idle_500_watchers')} |",
        f"| TriggerRun/s, one replica (32 threads) | {statistics.median(rates['one']):g} "
        f"| {' · '.join(f'{x:g}' for x in rates['one'])} | | |",
        f"| TriggerRun/s, two replicas (round-robin) | {statistics.median(rates['two']):g} "
        f"| {' · '.join(f'{x:g}' for x in rates['two'])} | | |",
        f"| two replicas ÷ one (median of the repetitions' ratios), errors | "
        f"{_rate_ratio(rates):.2f}, {rates['errors']} errors | | ≥ 1.0, 0 errors "
        f"| {mark('two_replicas_rate')} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--flood-window", type=float, default=5.0)
    parser.add_argument("--db-name", default="ghpulse_bench_cluster")
    args = parser.parse_args()
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{args.db_name}"')
    try:
        with tempfile.TemporaryDirectory(prefix="ghpulse-bench-cluster-") as tmp:
            result = run(args, Path(tmp))
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    result = {"commit": commit, "reps": args.reps, **result, "targets": targets(result)}
    print(markdown(result))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
