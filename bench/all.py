"""Run every registered benchmark and regenerate every table of BENCHMARKS.md from the results.

    .venv/bin/python bench/all.py                  # run all (~20 min), save, re-render
    .venv/bin/python bench/all.py --only links     # run one (by name: bench_<name>.py), re-render
    .venv/bin/python bench/all.py --render-only    # only re-render BENCHMARKS.md from the JSON
    .venv/bin/python bench/all.py --list           # the registry: names and arguments

The registry: a module `bench/bench_<name>.py` takes part by defining `QUICK_ARGS`, the arguments
of its run by this command: a tuple of strings, or a tuple of such tuples to run it several times
(e.g. once per backend). It prints its tables as markdown on stdout; a benchmark that prints a JSON
document last instead gets a generated `| metric | value |` table of it. Each benchmark's runs are
saved as `bench/results/quick_<name>.json` (the commit measured, whether the tree had local
changes, the arguments, durations, the markdown).

BENCHMARKS.md is hand-written prose around generated blocks: the block of `bench_<name>.py` sits
between the marker pair `<!-- bench:<name> -->` and `<!-- /bench:<name> -->` and is rewritten from
its saved result, headed by the commit it measured. A registered benchmark whose pair is not in
the document yet gets a section of its own appended at the end (move the pair where it belongs).
Nothing outside the marker pairs is ever changed.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCUMENT = ROOT / "BENCHMARKS.md"
#: What a "local change" is: anything tracked but this command's own output.
_MEASURED = ("--", ".", ":!BENCHMARKS.md", ":!bench/results")
#: One run of a benchmark may take this long before it is stopped (and recorded as failed).
TIMEOUT = 900
Invocations = tuple[tuple[str, ...], ...]
#: `bench_<name>.py` modules that are not benchmarks (a plugin a benchmark loads).
NOT_BENCHMARKS = frozenset({"jobs"})


def begin_marker(name: str) -> str:
    return f"<!-- bench:{name} -->"


def end_marker(name: str) -> str:
    return f"<!-- /bench:{name} -->"


# -- the registry ------------------------------------------------------------------------------


def registered(bench_dir: Path = BENCH) -> dict[str, Invocations]:
    """`{name: invocations}` of every `bench_<name>.py` that defines `QUICK_ARGS` (read from the
    source, not imported: a benchmark's imports may be heavy)."""
    found = {}
    for path in sorted(bench_dir.glob("bench_*.py")):
        quick = invocations(path.read_text())
        if quick is not None:
            found[path.stem.removeprefix("bench_")] = quick
    return found


def invocations(source: str) -> Invocations | None:
    """The runs a module's literal `QUICK_ARGS` asks for (None: not registered)."""
    quick = quick_args_value(source)
    if quick is None:
        return None
    items = tuple(quick)
    if items and all(isinstance(item, (tuple, list)) for item in items):
        return tuple(tuple(str(arg) for arg in item) for item in items)
    return (tuple(str(arg) for arg in items),)


def quick_args(source: str) -> tuple[str, ...] | None:
    """The arguments of a module's first run (None: not registered)."""
    runs = invocations(source)
    return None if runs is None else runs[0]


def quick_args_value(source: str) -> Any:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "QUICK_ARGS" for target in node.targets
        ):
            return ast.literal_eval(node.value)
    return None


# -- running -----------------------------------------------------------------------------------


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def run_one(name: str, runs: Invocations) -> dict[str, Any]:
    """Run `bench_<name>.py` once per invocation: its result, as saved in
    `results/quick_<name>.json`."""
    started, clock = datetime.now(UTC), time.monotonic()
    return {
        "bench": name,
        "commit": _git("rev-parse", "--short=12", "HEAD"),
        "local_changes": bool(_git("status", "--porcelain", "--untracked-files=no", *_MEASURED)),
        "started": started.isoformat(timespec="seconds"),
        "invocations": [_invoke(name, args) for args in runs],
        "seconds": round(time.monotonic() - clock, 1),
    }


def _invoke(name: str, args: tuple[str, ...]) -> dict[str, Any]:
    clock = time.monotonic()
    command = [sys.executable, str(BENCH / f"bench_{name}.py"), *args]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
        code, output, errors = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        code, output, errors = -1, "", f"stopped after {expired.timeout} s"
    return {
        "args": list(args),
        "seconds": round(time.monotonic() - clock, 1),
        "returncode": code,
        "markdown": as_markdown(output),
        "error_tail": errors.strip()[-2000:] if code else "",
    }


# -- a benchmark's output as markdown ----------------------------------------------------------


def as_markdown(output: str) -> str:
    """A benchmark's stdout as markdown: itself if it has a table, else a table of the JSON
    document it printed last, else a code block."""
    text = output.strip()
    if not text or any(line.startswith("|") for line in text.splitlines()):
        return text
    document = last_json(text)
    if isinstance(document, dict):
        rows = [f"| {key} | {value} |" for key, value in flatten(document)]
        return "\n".join(["| metric | value |", "|---|---:|", *rows])
    return f"```\n{text}\n```"


def last_json(text: str) -> Any:
    """The JSON document that ends `text` and starts at a line beginning with `{` or `[`."""
    lines = text.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start][:1] in "{[":
            try:
                return json.loads("\n".join(lines[start:]))
            except json.JSONDecodeError:
                continue
    return None


def flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """`(dotted key, shown value)` of every leaf of a JSON object (lists of scalars joined)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{index}]")
    elif isinstance(value, list):
        yield prefix, " · ".join(_shown(item) for item in value)
    else:
        yield prefix, _shown(value)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value).replace("|", "\\|")


# -- rendering ---------------------------------------------------------------------------------


def normalized(result: dict[str, Any]) -> dict[str, Any]:
    """A saved result in the current shape (results saved before several invocations per
    benchmark existed had one run's fields at the top level)."""
    if "invocations" in result:
        return result
    run = {key: result.get(key) for key in ("args", "seconds", "returncode", "markdown")}
    return {**result, "invocations": [{**run, "error_tail": result.get("error_tail", "")}]}


def block(result: dict[str, Any]) -> str:
    """One benchmark's generated block: a line naming the commit measured, then its tables."""
    result = normalized(result)
    name = result["bench"]
    commit = result["commit"] + (" + local changes" if result["local_changes"] else "")
    lines = [
        f"<!-- generated by bench/all.py from bench/results/quick_{name}.json: edit around it -->",
        f"**Measured at commit `{commit}`** by `bench/all.py`, started {result['started']}, "
        f"{result['seconds']:g} s in all.",
    ]
    for run in result["invocations"]:
        lines += ["", f"`bench/bench_{name}.py {' '.join(run['args'])}`, {run['seconds']:g} s:", ""]
        lines += _outcome(run)
    return "\n".join(lines)


def _outcome(run: dict[str, Any]) -> list[str]:
    if run["returncode"]:
        return [f"**Failed** (exit {run['returncode']}):", "", "```", run["error_tail"], "```"]
    # Its own headings go two levels down, under the hand-written section's.
    return [_demote(line) for line in str(run["markdown"]).splitlines()]


def _demote(line: str) -> str:
    return "##" + line if re.match(r"#{1,4} ", line) else line


def render(document: str, results: Sequence[dict[str, Any]]) -> str:
    """`document` with each result's block rewritten between its marker pair (a section with the
    pair appended at the end for a benchmark that has none yet)."""
    for result in sorted(results, key=lambda r: str(r["bench"])):
        document = place(document, str(result["bench"]), block(result))
    return document


def place(document: str, name: str, content: str) -> str:
    """`document` with `content` between the marker pair of `name`."""
    begin, end = begin_marker(name), end_marker(name)
    if document.count(begin) > 1 or document.count(end) > 1:
        raise ValueError(f"BENCHMARKS.md has the markers of {name!r} more than once")
    head, found, rest = document.partition(begin)
    if found and end in rest:
        return f"{head}{begin}\n{content}\n{end}{rest.split(end, 1)[1]}"
    if found or end in document:
        raise ValueError(f"BENCHMARKS.md has only one marker of {name!r}, or in the wrong order")
    section = f"## bench_{name}.py\n\n{begin}\n{content}\n{end}\n"
    return document.rstrip("\n") + "\n\n" + section


def unmarked(document: str, names: Iterable[str]) -> list[str]:
    """The registered benchmarks whose marker pair is not in `document`."""
    return [name for name in names if begin_marker(name) not in document]


# -- the command -------------------------------------------------------------------------------


def _saved() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(RESULTS.glob("quick_*.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", action="append", default=[], help="a benchmark's name")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--list", action="store_true", help="print the registry and exit")
    args = parser.parse_args()
    benchmarks = registered()
    if args.list:
        for name, runs in benchmarks.items():
            print(name, *(" ".join(run) for run in runs), sep="\n  ")
        return
    unknown = set(args.only) - set(benchmarks)
    if unknown:
        parser.error(f"not registered: {sorted(unknown)} (registered: {sorted(benchmarks)})")
    if not args.render_only:
        _run(benchmarks, set(args.only))
    DOCUMENT.write_text(render(DOCUMENT.read_text(), _saved()))
    print(f"rewrote {DOCUMENT.relative_to(ROOT)} from {len(_saved())} result(s)")


def _run(benchmarks: dict[str, Invocations], only: set[str]) -> None:
    RESULTS.mkdir(exist_ok=True)
    clock = time.monotonic()
    for name, runs in benchmarks.items():
        if only and name not in only:
            continue
        print(f"bench_{name}.py ({len(runs)} run(s)) ...", flush=True)
        result = run_one(name, runs)
        codes = [run["returncode"] for run in result["invocations"]]
        print(f"  {result['seconds']} s, exit {codes}", flush=True)
        (RESULTS / f"quick_{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"all runs: {time.monotonic() - clock:.0f} s", flush=True)


if __name__ == "__main__":
    main()
