"""The whole suite: per backend (the two backends side by side, each with its own fake GitHub), a
fault-free baseline, then every fault of the catalog `tries` times, with kill moments drawn from
a generator seeded by the seed and the backend."""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from faults.cases import Outcome, compare, draw, run_case
from faults.catalog import CATALOG, Fault, tries_for
from faults.cluster import PG_HOST, PG_PORT, FakeGitHubProcess
from faults.proxy import TcpProxy

LATENCY_MS = 5.0


class Suite:
    """Runs the catalog; `on_row(results)` sees the results so far after every row (a run cut
    short still leaves its finished rows); `keep` leaves every process's log in `tmp`."""

    def __init__(
        self, seed: int, kill_tries: int, storm_tries: int, say: Any, on_row: Any, keep: bool
    ) -> None:
        self.seed, self.kill_tries, self.storm_tries = seed, kill_tries, storm_tries
        self.say, self.on_row, self.keep = say, on_row, keep
        self.tmp = Path(tempfile.mkdtemp(prefix="ghpulse-faults-"))
        self.rows: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {
            "seed": seed, "kill_tries": kill_tries, "storm_tries": storm_tries, "rows": self.rows,
        }  # fmt: skip
        self.faults = list(CATALOG)
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def run(self, backends: tuple[str, ...], only: list[str] | None = None) -> dict[str, Any]:
        """Every fault (or those whose name contains one of `only`) on every backend."""
        self.faults = [f for f in CATALOG if not only or any(part in f.name for part in only)]
        try:
            with ThreadPoolExecutor(len(backends)) as pool:
                for future in [pool.submit(self._backend, backend) for backend in backends]:
                    future.result()
        finally:
            if self.keep:
                self.say(f"logs kept in {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        self.results["wall_seconds"] = round(time.monotonic() - self._started, 1)
        return self.results

    def _backend(self, backend: str) -> None:
        rng = random.Random(f"{self.seed}-{backend}")
        tmp = self.tmp / backend
        tmp.mkdir()
        github = FakeGitHubProcess(tmp, LATENCY_MS)
        proxy = TcpProxy(PG_HOST, PG_PORT).start() if backend == "postgresql" else None
        try:
            baseline = run_case(tmp / "baseline", backend, github, None, None)
            compare(baseline, baseline)
            self.say(f"baseline {backend}: {baseline.duration:.1f} s {baseline.problems or 'ok'}")
            if baseline.problems:
                raise RuntimeError(f"the fault-free crawl on {backend} failed: {baseline.problems}")
            for fault in self.faults:
                if backend in fault.backends:
                    row = self._row(tmp, fault, backend, rng, github, proxy, baseline)
                    self._add(row)
        finally:
            if proxy is not None:
                proxy.stop()
            github.stop()

    def _add(self, row: dict[str, Any]) -> None:
        with self._lock:
            self.rows.append(row)
            order = {fault.name: i for i, fault in enumerate(CATALOG)}
            self.rows.sort(key=lambda r: (order[r["fault"]], r["backend"] != "sqlite"))
            self.results["wall_seconds"] = round(time.monotonic() - self._started, 1)
            if self.on_row is not None:
                self.on_row(self.results)

    def _row(
        self,
        tmp: Path,
        fault: Fault,
        backend: str,
        rng: random.Random,
        github: FakeGitHubProcess,
        proxy: TcpProxy | None,
        baseline: Outcome,
    ) -> dict[str, Any]:
        cases = []
        for attempt in range(tries_for(fault, self.kill_tries, self.storm_tries)):
            at = None if fault.kind == "storm" else draw(rng, baseline.duration)
            name = f"{CATALOG.index(fault)}-{attempt}"
            use_proxy = proxy if fault.kind == "db_outage" else None
            outcome = run_case(tmp / name, backend, github, fault, at, use_proxy)
            compare(outcome, baseline)
            cases.append(outcome.record())
            verdict = "survived" if not outcome.problems else f"FAILED {outcome.problems}"
            where = "" if at is None else f" at {at:.2f} s ({outcome.phase})"
            self.say(f"{fault.name} / {backend} #{attempt + 1}{where}: {verdict}")
        return {
            "fault": fault.name,
            "backend": backend,
            "tries": len(cases),
            "survived": sum(not case["problems"] for case in cases),
            "baseline_seconds": baseline.duration,
            "cases": cases,
        }
