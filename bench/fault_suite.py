"""The fault suite: kill -9 of crawlers and schedulers, GitHub storms and a PostgreSQL outage
against real `ghpulse` processes, each compared with a fault-free crawl.

    .venv/bin/python bench/fault_suite.py [--seed 12] [--tries 20] [--storm-tries 1] [--smoke]

Writes bench/results/fault_suite.json (raw, every try) and RELIABILITY.md (the table). `--smoke`
runs 2 tries per kill row and labels the results so. Not collected by pytest (bench/ is not a
test path); PostgreSQL on 127.0.0.1:5432 (`GHPULSE_TEST_PG`) is required for its rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from faults.catalog import BACKENDS, CATALOG
from faults.report import hand_written, render
from faults.suite import Suite

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--tries", type=int, default=20, help="tries per kill -9 row")
    parser.add_argument("--storm-tries", type=int, default=1, help="tries per other row")
    parser.add_argument("--smoke", action="store_true", help="2 tries per kill row")
    parser.add_argument("--backend", choices=BACKENDS, action="append", help="default: both")
    parser.add_argument("--only", action="append", help="faults whose name contains this")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="only merge these raw results into --out/--report"
    )
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fault_suite.json")
    parser.add_argument("--report", type=Path, default=ROOT / "RELIABILITY.md")
    args = parser.parse_args()
    tries = 2 if args.smoke else args.tries
    backends = tuple(args.backend or BACKENDS)
    label = "Smoke run (2 tries per kill row)" if args.smoke else "Full run"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()

    def write(results: dict[str, Any], label: str) -> None:
        # Merged results name the commits their parts measured, not the one merging them.
        results |= {"commit": results.get("commit") or commit, "label": label}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        previous = args.report.read_text() if args.report.exists() else ""
        args.report.write_text(render(results, results["commit"], label) + hand_written(previous))

    def partial(results: dict[str, Any]) -> None:
        write(results, f"{label}, unfinished ({len(results['rows'])} rows so far)")

    if args.merge:
        results = merge([json.loads(path.read_text()) for path in args.merge])
        write(results, results["label"])
        return
    suite = Suite(args.seed, tries, args.storm_tries, say=_say, on_row=partial, keep=args.keep)
    results = suite.run(backends, args.only)
    write(results, label)
    print(f"wrote {args.out} and {args.report}")


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Raw results of runs of parts of the catalog (`--only`, same seed) as one."""
    order = {fault.name: i for i, fault in enumerate(CATALOG)}
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for row in (row for part in parts for row in part["rows"]):
        unique.setdefault((row["fault"], row["backend"]), row)  # a row run twice: the first
    rows = sorted(unique.values(), key=lambda r: (order[r["fault"]], r["backend"] != "sqlite"))
    wall = max(part["wall_seconds"] for part in parts)
    measured = (c for part in parts for c in str(part["commit"]).split(" + "))
    commits = " + ".join(dict.fromkeys(measured))
    label = parts[0]["label"]
    if len(parts) > 1:
        label = f"{len(parts)} runs (`--only`, same seed) merged, a row run twice from the first"
    return {**parts[0], "rows": rows, "label": label, "wall_seconds": wall, "commit": commits}


def _say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    main()
