"""Scheduler benchmark: one `ghpulse scheduler` process on SQLite, clients in separate processes.

    .venv/bin/python bench/bench_scheduler.py [--reps 5] [--quick]

Measured in one run against one server (medians of `--reps` repetitions; ratios against the
health-Check floor measured in the same run):
1. floor: `grpc.health.v1.Health/Check` p50/p99, sequential, one client;
2. `TriggerRun` p50/p99, sequential, a new concurrency key per call (every call creates a run);
3. trigger -> first step started p50/p99, with a `ghpulse crawler` running the one-step `noop`
   job of `noop_plugin.py`;
4. sustained TriggerRun/s vs health-Check/s at concurrency 64 (4 processes x 16 in flight);
5. 1,000 watchers (4 processes, 250 streams each over 5 connections) on one run reporting 10
   progress events/s for 10 s: delivery latency p99 (scheduler's event stamp -> arrival) and the
   scheduler's extra RSS (peak during minus before the first repetition).
Phases 3 and 5 run first, with the crawler; it is then stopped so that the runs triggered by
phases 1, 2 and 4 stay pending and no dispatch work competes with them.

Prints a markdown report and writes it to bench/results/scheduler.md.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from pathlib import Path
from queue import Empty
from typing import Any

import _clients
import _procs
import grpc
from _report import Report, median_of, percentile

from common.proto.ghpulse.v1 import scheduler_service_pb2_grpc as sched_grpc

#: The quick run of `bench/all.py` (its registry).
QUICK_ARGS = ("--quick",)

RESULTS = Path(__file__).resolve().parent / "results" / "scheduler.md"
MB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    reps: int = 5
    sequential_calls: int = 1000
    first_step_calls: int = 100
    concurrency: int = 64
    client_procs: int = 4
    window: float = 3.0
    watchers: int = 1000
    watcher_procs: int = 4
    watcher_channels: int = 5
    ticks: int = 100


def _spawn() -> SpawnContext:
    # Spawned, not forked: each client starts with a fresh gRPC runtime of its own.
    return mp.get_context("spawn")


def _in_process(target: Any, *args: Any) -> Any:
    ctx = _spawn()
    out = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, out))
    process.start()
    result = out.get(timeout=600)
    process.join(30)
    return result


def phase_first_step(address: str, plan: Plan, report: Report) -> None:
    results = _in_process(_clients.first_step, address, plan.reps, plan.first_step_calls, 20)
    recorded = [[r for r, _ in rep] for rep in results]
    delivered = [[d for _, d in rep] for rep in results]
    p50, p99 = median_of(recorded, 50), median_of(recorded, 99)
    report.add("trigger -> step_started recorded, p50", f"{p50:.2f} ms", "<= 3 ms", p50 <= 3)
    report.add("trigger -> step_started recorded, p99", f"{p99:.2f} ms", "<= 15 ms", p99 <= 15)
    report.add(
        "trigger -> step_started delivered to a watcher, p50 / p99",
        f"{median_of(delivered, 50):.2f} / {median_of(delivered, 99):.2f} ms",
    )


def phase_watchers(address: str, pid: int, gates: Path, plan: Plan, report: Report) -> None:
    ctx = _spawn()
    out = ctx.Queue()
    commands = [ctx.Queue() for _ in range(plan.watcher_procs)]
    per_proc = plan.watchers // plan.watcher_procs
    procs = [
        ctx.Process(
            target=_clients.watchers,
            args=(address, per_proc, plan.watcher_channels, commands[i], out),
        )
        for i in range(plan.watcher_procs)
    ]
    for process in procs:
        process.start()
    baseline = _procs.rss_bytes(pid)
    reps = [_watch_rep(address, pid, gates, plan, commands, out) for _ in range(plan.reps)]
    for queue in commands:
        queue.put(None)
    for process in procs:
        process.join(30)
    _watch_rows(report, plan, baseline, reps)


def _watch_rep(
    address: str, pid: int, gates: Path, plan: Plan, commands: list[Any], out: Any
) -> dict[str, Any]:
    with grpc.insecure_channel(address) as channel:
        stub = sched_grpc.SchedulerServiceStub(channel)
        run = stub.TriggerRun(_clients.trigger_request("ticks", ticks=plan.ticks)).run
    for queue in commands:
        queue.put(run.id)
    for _ in commands:
        assert out.get(timeout=120)[0] == "ready"
    ready_rss = _procs.rss_bytes(pid)
    (gates / run.id).touch()
    cpu, started = _procs.cpu_seconds(pid), time.monotonic()
    peak, done = ready_rss, list[Any]()
    while len(done) < len(commands):
        with contextlib.suppress(Empty):
            done.append(out.get(timeout=0.1))
        peak = max(peak, _procs.rss_bytes(pid))
    cores = (_procs.cpu_seconds(pid) - cpu) / (time.monotonic() - started)
    latencies = [value for item in done for value in item[1]]
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "events": sum(item[3] for item in done),
        "jumps": sum(item[2] for item in done),
        "ready_rss": ready_rss,
        "peak_rss": peak,
        "cores": cores,
    }


def _watch_rows(report: Report, plan: Plan, baseline: int, reps: list[dict[str, Any]]) -> None:
    def med(key: str) -> float:
        return float(statistics.median(rep[key] for rep in reps))

    p99 = med("p99")
    extra = (med("peak_rss") - baseline) / MB
    label = f"{plan.watchers} watchers, 10 events/s"
    report.add(f"{label}: delivery p50", f"{med('p50'):.1f} ms")
    report.add(f"{label}: delivery p99", f"{p99:.1f} ms", "<= 50 ms", p99 <= 50)
    report.add(f"{label}: delivery max", f"{med('max'):.1f} ms")
    report.add(
        f"{label}: events received / coalesced jumps",
        f"{med('events'):.0f} / {med('jumps'):.0f}",
    )
    report.add(
        f"{label}: scheduler RSS before -> all subscribed -> peak",
        f"{baseline / MB:.0f} -> {med('ready_rss') / MB:.0f} -> {med('peak_rss') / MB:.0f} MB",
    )
    report.add(f"{label}: scheduler CPU while events flow", f"{med('cores'):.2f} cores")
    report.add(f"{label}: extra RSS", f"{extra:.0f} MB", "<= 100 MB", extra <= 100)


def phase_sequential(address: str, plan: Plan, report: Report) -> None:
    results = _in_process(_clients.sequential, address, plan.reps, plan.sequential_calls, 200)
    health, trigger = results["health"], results["trigger"]
    h50, h99 = median_of(health, 50), median_of(health, 99)
    t50, t99 = median_of(trigger, 50), median_of(trigger, 99)
    ratio = statistics.median(
        percentile(t, 50) / percentile(h, 50) for t, h in zip(trigger, health, strict=True)
    )
    report.add("health Check p50 / p99 (floor)", f"{h50:.3f} / {h99:.3f} ms")
    report.add("TriggerRun p50 / p99", f"{t50:.3f} / {t99:.3f} ms")
    report.add("TriggerRun p50 / health p50", f"{ratio:.2f}x", "<= 2x (stretch 1.5x)", ratio <= 2)


def phase_throughput(address: str, plan: Plan, report: Report) -> None:
    ctx = _spawn()
    out = ctx.Queue()
    barrier = ctx.Barrier(plan.client_procs)
    per_proc = plan.concurrency // plan.client_procs
    procs = [
        ctx.Process(
            target=_clients.throughput,
            args=(address, plan.reps, per_proc, 0.5, plan.window, barrier, out),
        )
        for _ in range(plan.client_procs)
    ]
    for process in procs:
        process.start()
    results = [out.get(timeout=600) for _ in procs]
    for process in procs:
        process.join(30)
    rates = {
        kind: [sum(r[kind][rep] for r in results) / plan.window for rep in range(plan.reps)]
        for kind in _clients.KINDS
    }
    ratio = statistics.median(t / h for t, h in zip(rates["trigger"], rates["health"], strict=True))
    label = f"concurrency {plan.concurrency}"
    report.add(f"health Check/s, {label}", f"{statistics.median(rates['health']):.0f}")
    report.add(f"TriggerRun/s, {label}", f"{statistics.median(rates['trigger']):.0f}")
    report.add("TriggerRun/s / health Check/s", f"{ratio:.0%}", ">= 40%", ratio >= 0.4)


PHASES = ("first_step", "watchers", "sequential", "throughput")


def run(plan: Plan, log_level: str, only: frozenset[str] = frozenset(PHASES)) -> Report:
    report = Report("Scheduler (SQLite)")
    report.setup = [
        f"`ghpulse scheduler` on SQLite (WAL), log level {log_level}; {os.cpu_count()} CPUs; "
        f"medians of {plan.reps} repetitions; clients in separate processes.",
    ]
    with tempfile.TemporaryDirectory(prefix="ghpulse-bench-") as tmp_name:
        tmp = Path(tmp_name)
        gates = tmp / "gates"
        gates.mkdir()
        scheduler = _procs.start_scheduler(tmp, log_level)
        try:
            crawler = _procs.start_crawler(tmp, scheduler.address, gates, log_level)
            try:
                if "first_step" in only:
                    phase_first_step(scheduler.address, plan, report)
                if "watchers" in only:
                    phase_watchers(scheduler.address, scheduler.pid, gates, plan, report)
            finally:
                crawler.stop()
            if "sequential" in only:
                phase_sequential(scheduler.address, plan, report)
            if "throughput" in only:
                phase_throughput(scheduler.address, plan, report)
        finally:
            scheduler.stop()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--log-level", default="info", help="the services' GHPULSE_LOG_LEVEL")
    parser.add_argument(
        "--only", action="append", choices=PHASES, help="run only this phase (repeatable)"
    )
    args = parser.parse_args()
    plan = Plan(reps=args.reps)
    if args.quick:
        plan = Plan(
            reps=args.reps,
            sequential_calls=200,
            first_step_calls=20,
            window=1.0,
            watchers=200,
            ticks=20,
        )
    started = time.monotonic()
    report = run(plan, args.log_level, frozenset(args.only or PHASES))
    report.notes.append(f"Total benchmark time: {time.monotonic() - started:.0f} s.")
    text = report.markdown()
    if not args.only:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
