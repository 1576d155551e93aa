"""The whole suite: a fault-free baseline per backend, then every fault of the catalog on every
backend, `tries` times each, with kill moments drawn from one seeded generator."""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from faults.cases import Outcome, compare, draw, run_case
from faults.catalog import CATALOG, Fault, tries_for
from faults.cluster import PG_HOST, PG_PORT, FakeGitHubProcess
from faults.proxy import TcpProxy

LATENCY_MS = 5.0


def run_suite(
    seed: int,
    kill_tries: int,
    storm_tries: int,
    backends: tuple[str, ...],
    say: Any = print,
    keep: bool = False,
    on_row: Any = None,
) -> dict[str, Any]:
    """Run everything; returns the raw results (what bench/results/ keeps). `keep` leaves the
    temporary directory (every process's log) in place; `on_row(results)` sees the results so
    far after every row (a run cut short still leaves its finished rows)."""
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="ghpulse-faults-"))
    github = FakeGitHubProcess(tmp, LATENCY_MS)
    proxy = TcpProxy(PG_HOST, PG_PORT).start() if "postgresql" in backends else None
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    results = {"seed": seed, "kill_tries": kill_tries, "storm_tries": storm_tries, "rows": rows}
    try:
        for backend in backends:
            baseline = run_case(tmp / f"baseline-{backend}", backend, github, None, None)
            compare(baseline, baseline)
            say(f"baseline {backend}: {baseline.duration:.1f} s {baseline.problems or 'ok'}")
            if baseline.problems:
                raise RuntimeError(f"the fault-free crawl on {backend} failed: {baseline.problems}")
            for fault in CATALOG:
                if backend in fault.backends:
                    tries = tries_for(fault, kill_tries, storm_tries)
                    rows.append(_row(tmp, fault, backend, tries, rng, github, proxy, baseline, say))
                    results["wall_seconds"] = round(time.monotonic() - started, 1)
                    if on_row is not None:
                        on_row(results)
    finally:
        if proxy is not None:
            proxy.stop()
        github.stop()
        if keep:
            say(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    return results


def _row(
    tmp: Path,
    fault: Fault,
    backend: str,
    tries: int,
    rng: random.Random,
    github: FakeGitHubProcess,
    proxy: TcpProxy | None,
    baseline: Outcome,
    say: Any,
) -> dict[str, Any]:
    cases = []
    for attempt in range(tries):
        at = None if fault.kind == "storm" else draw(rng, baseline.duration)
        name = f"{CATALOG.index(fault)}-{backend}-{attempt}"
        use_proxy = proxy if fault.kind == "db_outage" else None
        outcome = run_case(tmp / name, backend, github, fault, at, use_proxy)
        compare(outcome, baseline)
        cases.append(outcome.record())
        verdict = "survived" if not outcome.problems else f"FAILED {outcome.problems}"
        say(f"{fault.name} / {backend} #{attempt + 1} at={at} phase={outcome.phase}: {verdict}")
    survived = sum(not case["problems"] for case in cases)
    return {
        "fault": fault.name,
        "backend": backend,
        "tries": tries,
        "survived": survived,
        "baseline_seconds": baseline.duration,
        "cases": cases,
    }
