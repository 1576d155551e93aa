"""`bench/all.py`, the one command that regenerates BENCHMARKS.md: which benchmarks it runs (the
registry: a `QUICK_ARGS` literal in `bench/bench_<name>.py`) and how it rewrites the document
(only its own marked section; every table headed by the commit measured)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH_ALL = Path(__file__).resolve().parents[2] / "bench" / "all.py"


@pytest.fixture(scope="module")
def bench_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_all", BENCH_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(bench: str, **changes: Any) -> dict[str, Any]:
    result = {
        "bench": bench,
        "commit": "abc123def456",
        "local_changes": False,
        "args": ["--quick"],
        "started": "2026-12-03T13:00:00+00:00",
        "seconds": 12.5,
        "returncode": 0,
        "markdown": "## Its title\n\n| metric | value |\n|---|---:|\n| x | 1 |",
        "error_tail": "",
    }
    return {**result, **changes}


def test_a_module_registers_by_its_quick_args(bench_all: ModuleType) -> None:
    assert bench_all.quick_args('"""Doc."""\nQUICK_ARGS = ("--quick", "--runs", 2)\n') == (
        "--quick",
        "--runs",
        "2",
    )
    assert bench_all.quick_args("def main() -> None: ...\n") is None


def test_every_benchmark_of_the_repository_is_registered(bench_all: ModuleType) -> None:
    assert {"api", "crawl", "links", "scheduler"} <= set(bench_all.registered())
    assert "jobs" not in bench_all.registered()  # a plugin the scheduler benchmark loads


def test_render_appends_then_replaces_only_its_section(bench_all: ModuleType) -> None:
    document = "# Benchmarks\n\nHand-written text.\n"
    first = bench_all.render(document, [_result("links"), _result("api", local_changes=True)])
    assert first.startswith(document)
    assert first.index("bench_api.py, commit `abc123def456 + local changes`") < first.index(
        "bench_links.py, commit `abc123def456`"
    )
    assert "\n### Its title" not in first and "\n#### Its title" in first  # one level down
    again = bench_all.render(first + "\nAfter.\n", [_result("links", commit="fff000")])
    assert again.count(bench_all.BEGIN) == 1 and "bench_api.py" not in again
    assert "commit `fff000`" in again and again.endswith("\nAfter.\n")
    assert "Hand-written text." in again


def test_a_failed_run_is_shown_as_failed(bench_all: ModuleType) -> None:
    failed = _result("crawl", returncode=1, markdown="", error_tail="Traceback: boom")
    text = bench_all.render("# B\n", [failed])
    assert "**Failed** (exit 1)" in text and "Traceback: boom" in text
