"""Benchmark clients. Each function here is the body of a separate client process (spawned), with
its own gRPC channel(s); results go back to the benchmark process through a queue.

Latencies are in milliseconds. Wall-clock times (`time.time_ns`) are compared with the scheduler's
event stamps: both processes run on the same machine and read the same clock.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable, Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.proto.ghpulse.v1 import runs_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2 as pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2_grpc as sched_grpc

KINDS = ("health", "trigger")
HEALTH = health_pb2.HealthCheckRequest()
_keys = itertools.count()


def trigger_request(kind: str = "noop", **params: Any) -> pb2.TriggerRunRequest:
    """A TriggerRun of a plugin job (`noop`: bench/noop_plugin.py, `ticks`: bench/bench_jobs.py)
    with a concurrency key never used before, so every call creates a run."""
    key = f"bench:{os.getpid()}:{next(_keys)}:{time.monotonic_ns()}"
    request = pb2.TriggerRunRequest(plugin=runs_pb2.PluginJob(kind=kind), concurrency_key=key)
    request.plugin.params.update(params)
    return request


def _ms(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e6


# -- 1 + 2: sequential latency ----------------------------------------------------------------


def sequential(address: str, reps: int, calls: int, warmup: int, out: Queue[Any]) -> None:
    """Per repetition: `calls` health Checks, then `calls` TriggerRuns, one at a time."""
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        sched = sched_grpc.SchedulerServiceStub(channel)
        calls_by_kind: dict[str, Callable[[], object]] = {
            "health": lambda: health.Check(HEALTH, timeout=10),
            "trigger": lambda: sched.TriggerRun(trigger_request(), timeout=10),
        }
        for kind in KINDS:
            for _ in range(warmup):
                calls_by_kind[kind]()
        results: dict[str, list[list[float]]] = {kind: [] for kind in KINDS}
        for _ in range(reps):
            for kind in KINDS:
                results[kind].append(_timed(calls_by_kind[kind], calls))
    out.put(results)


def _timed(call: Callable[[], object], calls: int) -> list[float]:
    latencies = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        latencies.append(_ms(start, time.perf_counter_ns()))
    return latencies


# -- 4: sustained throughput ------------------------------------------------------------------


def throughput(
    address: str,
    reps: int,
    concurrency: int,
    warmup: float,
    duration: float,
    barrier: Barrier,
    out: Queue[Any],
) -> None:
    """Per repetition and kind: after a barrier shared with the other client processes, keep
    `concurrency` calls in flight; count the calls completed in the `duration` window."""
    out.put(asyncio.run(_throughput(address, reps, concurrency, warmup, duration, barrier)))


async def _throughput(
    address: str, reps: int, concurrency: int, warmup: float, duration: float, barrier: Barrier
) -> dict[str, list[int]]:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        sched = sched_grpc.SchedulerServiceStub(channel)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "health": lambda: health.Check(HEALTH, timeout=30),
            "trigger": lambda: sched.TriggerRun(trigger_request(), timeout=30),
        }
        counts: dict[str, list[int]] = {kind: [] for kind in KINDS}
        for _ in range(reps):
            for kind in KINDS:
                await asyncio.to_thread(barrier.wait)
                counts[kind].append(await _window(calls[kind], concurrency, warmup, duration))
        return counts


async def _window(
    call: Callable[[], Awaitable[object]], concurrency: int, warmup: float, duration: float
) -> int:
    start = time.monotonic() + warmup
    end = start + duration
    completed = 0

    async def loop() -> None:
        nonlocal completed
        while time.monotonic() < end:
            await call()
            if start <= time.monotonic() < end:
                completed += 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return completed


# -- 3: trigger -> first step started ---------------------------------------------------------


def first_step(address: str, reps: int, calls: int, warmup: int, out: Queue[Any]) -> None:
    """Per run: TriggerRun, then WatchRun until the run ends. Records, from the client's send
    time: the scheduler's stamp on the step_started event ('recorded') and the event's arrival
    ('delivered'; includes opening the watch after TriggerRun returns)."""
    with grpc.insecure_channel(address) as channel:
        sched = sched_grpc.SchedulerServiceStub(channel)
        for _ in range(warmup):
            _one_run(sched)
        results: list[list[tuple[float, float]]] = []
        for _ in range(reps):
            results.append([_one_run(sched) for _ in range(calls)])
    out.put(results)


def _one_run(sched: sched_grpc.SchedulerServiceStub) -> tuple[float, float]:
    request = trigger_request()
    sent = time.time_ns()
    run = sched.TriggerRun(request, timeout=10).run
    recorded = delivered = 0.0
    for message in sched.WatchRun(pb2.WatchRunRequest(run_id=run.id), timeout=30):
        if message.WhichOneof("message") != "event":
            continue
        event = message.event
        if event.WhichOneof("kind") == "step_started" and not delivered:
            delivered = _ms(sent, time.time_ns())
            recorded = _ms(sent, event.time.ToNanoseconds())
    if not delivered:
        raise RuntimeError(f"run {run.id} ended without a step_started event")
    return recorded, delivered


# -- 5: many watchers -------------------------------------------------------------------------


def watchers(
    address: str, streams: int, channels: int, commands: Queue[Any], out: Queue[Any]
) -> None:
    """For each run id received on `commands` (None ends): open `streams` WatchRuns over
    `channels` connections, report ("ready", n) once every snapshot arrived, then ("done", ...)
    with the delivery latency of every live event (scheduler stamp -> arrival; events replayed
    from the log because they predate the snapshot are skipped) when all streams end."""
    while (run_id := commands.get()) is not None:
        out.put(asyncio.run(_watch_all(address, run_id, streams, channels, out)))


async def _watch_all(
    address: str, run_id: str, streams: int, channels: int, out: Queue[Any]
) -> tuple[str, list[float], int, int]:
    # A local subchannel pool per channel: separate TCP connections, as separate clients have.
    options = [("grpc.use_local_subchannel_pool", 1)]
    opened = [grpc.aio.insecure_channel(address, options=options) for _ in range(channels)]
    ready = asyncio.Semaphore(0)
    latencies: list[float] = []
    jumps = [0, 0]  # seq jumps (coalesced progress), events received

    async def watch(channel: grpc.aio.Channel) -> None:
        stub = sched_grpc.SchedulerServiceStub(channel)
        last = replayed = 0
        async for message in stub.WatchRun(pb2.WatchRunRequest(run_id=run_id)):
            arrived = time.time_ns()
            if message.WhichOneof("message") == "snapshot":
                last = replayed = message.snapshot.last_seq
                ready.release()
                continue
            event = message.event
            if event.seq <= replayed:
                continue  # Stored before this watcher subscribed: not a live delivery.
            latencies.append(_ms(event.time.ToNanoseconds(), arrived))
            jumps[0] += event.seq > last + 1
            jumps[1] += 1
            last = event.seq

    tasks = [asyncio.create_task(watch(opened[i % channels])) for i in range(streams)]
    for _ in range(streams):
        await ready.acquire()
    out.put(("ready", streams))
    await asyncio.gather(*tasks)
    for channel in opened:
        await channel.close(None)
    return ("done", latencies, jumps[0], jumps[1])
