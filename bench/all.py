"""Run every registered benchmark in quick mode and regenerate BENCHMARKS.md from the results.

    .venv/bin/python bench/all.py                 # run all, write bench/results/*.json, render
    .venv/bin/python bench/all.py --only links    # run one (by name: bench_<name>.py)
    .venv/bin/python bench/all.py --render-only   # only re-render BENCHMARKS.md from the JSON

The registry: a module `bench/bench_<name>.py` takes part by defining `QUICK_ARGS`, the arguments
of its quick run (a tuple of strings); it prints its markdown table(s) on stdout. Each run is saved
as `bench/results/quick_<name>.json` (the commit measured, whether the tree had local changes, the
arguments, the duration, the markdown). The section of BENCHMARKS.md between the two markers below
is rewritten from every saved result, one table per benchmark, each headed by its commit.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCUMENT = ROOT / "BENCHMARKS.md"
BEGIN = "<!-- bench/all.py: generated from bench/results/quick_*.json, do not edit by hand -->"
END = "<!-- bench/all.py: end -->"
#: What a "local change" is: anything tracked but this command's own output.
_MEASURED = ("--", ".", ":!BENCHMARKS.md", ":!bench/results")
#: One benchmark's quick run may take this long before it is stopped (and recorded as failed).
TIMEOUT = 600


def registered(bench_dir: Path = BENCH) -> dict[str, tuple[str, ...]]:
    """`{name: QUICK_ARGS}` of every `bench_<name>.py` that defines `QUICK_ARGS` (read from the
    source, not imported: a benchmark's imports may be heavy)."""
    found = {}
    for path in sorted(bench_dir.glob("bench_*.py")):
        quick = quick_args(path.read_text())
        if quick is not None:
            found[path.stem.removeprefix("bench_")] = quick
    return found


def quick_args(source: str) -> tuple[str, ...] | None:
    """The literal `QUICK_ARGS = (...)` of a module's source (None: not registered)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "QUICK_ARGS" for target in node.targets
        ):
            return tuple(str(arg) for arg in ast.literal_eval(node.value))
    return None


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def run_one(name: str, args: tuple[str, ...]) -> dict[str, Any]:
    """Run `bench_<name>.py` with `args`: its result, as saved in `results/quick_<name>.json`."""
    started, clock = datetime.now(UTC), time.monotonic()
    command = [sys.executable, str(BENCH / f"bench_{name}.py"), *args]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
        code, output, errors = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        code, output, errors = -1, "", f"stopped after {expired.timeout} s"
    return {
        "bench": name,
        "commit": _git("rev-parse", "--short=12", "HEAD"),
        "local_changes": bool(_git("status", "--porcelain", "--untracked-files=no", *_MEASURED)),
        "args": list(args),
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - clock, 1),
        "returncode": code,
        "markdown": output.strip(),
        "error_tail": errors.strip()[-2000:] if code else "",
    }


def section(result: dict[str, Any]) -> str:
    """One benchmark's part of the generated section: a heading naming the commit, its tables."""
    commit = result["commit"] + (" + local changes" if result["local_changes"] else "")
    args = " ".join(result["args"])
    lines = [
        f"### bench_{result['bench']}.py, commit `{commit}`",
        "",
        f"`bench/bench_{result['bench']}.py {args}`, started {result['started']}, "
        f"{result['seconds']:g} s.",
        "",
    ]
    if result["returncode"]:
        lines += [
            f"**Failed** (exit {result['returncode']}):",
            "",
            "```",
            result["error_tail"],
            "```",
        ]
    else:
        # Its own headings go one level down, under this one.
        lines += [_demote(line) for line in result["markdown"].splitlines()]
    return "\n".join(lines) + "\n"


def _demote(line: str) -> str:
    return "#" * 2 + line if line.startswith("#") else line


def render(document: str, results: list[dict[str, Any]]) -> str:
    """`document` with the generated section replaced (appended if it has none yet)."""
    body = "\n".join(section(r) for r in sorted(results, key=lambda r: str(r["bench"])))
    generated = f"{BEGIN}\n\n{body}\n{END}"
    if BEGIN in document and END in document:
        head, rest = document.split(BEGIN, 1)
        return head + generated + rest.split(END, 1)[1]
    intro = "\n## Quick runs of every benchmark (bench/all.py)\n\n"
    return document.rstrip("\n") + "\n" + intro + generated + "\n"


def _saved() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(RESULTS.glob("quick_*.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", action="append", default=[], help="a benchmark's name")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    benchmarks = registered()
    unknown = set(args.only) - set(benchmarks)
    if unknown:
        parser.error(f"not registered: {sorted(unknown)} (registered: {sorted(benchmarks)})")
    if not args.render_only:
        RESULTS.mkdir(exist_ok=True)
        for name, quick in benchmarks.items():
            if args.only and name not in args.only:
                continue
            print(f"bench_{name}.py {' '.join(quick)} ...", flush=True)
            result = run_one(name, quick)
            print(f"  {result['seconds']} s, exit {result['returncode']}", flush=True)
            (RESULTS / f"quick_{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    DOCUMENT.write_text(render(DOCUMENT.read_text(), _saved()))
    print(f"rewrote {DOCUMENT.relative_to(ROOT)} from {len(_saved())} result(s)")


if __name__ == "__main__":
    main()
