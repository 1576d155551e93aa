"""`bench/all.py`, the one command that regenerates every table of BENCHMARKS.md: which benchmarks
it runs (the registry: a `QUICK_ARGS` literal in `bench/bench_<name>.py`), how it turns their
output into markdown, and how it rewrites the document (only between each benchmark's marker pair,
every block headed by the commit measured)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH_ALL = ROOT / "bench" / "all.py"


@pytest.fixture(scope="module")
def bench_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_all", BENCH_ALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(**changes: Any) -> dict[str, Any]:
    run = {
        "args": ["--quick"],
        "seconds": 12.5,
        "returncode": 0,
        "markdown": "## Its title\n\n| metric | value |\n|---|---:|\n| x | 1 |",
        "error_tail": "",
    }
    return {**run, **changes}


def _result(bench: str, *runs: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = {
        "bench": bench,
        "commit": "abc123def456",
        "local_changes": False,
        "started": "2026-12-03T13:00:00+00:00",
        "seconds": 12.5,
        "invocations": list(runs) or [_run()],
    }
    return {**result, **changes}


def _document(*names: str) -> str:
    parts = ["# Benchmarks\n\nIntro.\n"]
    for name in names:
        parts.append(
            f"## {name}\n\nHow it works.\n\n<!-- bench:{name} -->\nold\n<!-- /bench:{name} -->\n\n"
            f"What limits {name}.\n"
        )
    return "\n".join(parts)


def test_a_module_registers_by_its_quick_args(bench_all: ModuleType) -> None:
    source = '"""Doc."""\nQUICK_ARGS = ("--quick", "--runs", 2)\n'
    assert bench_all.invocations(source) == (("--quick", "--runs", "2"),)
    assert bench_all.quick_args(source) == ("--quick", "--runs", "2")
    assert bench_all.invocations("def main() -> None: ...\n") is None


def test_a_module_may_ask_for_several_runs(bench_all: ModuleType) -> None:
    source = 'QUICK_ARGS = (("--backend", "sqlite"), ("--backend", "postgresql"))\n'
    assert bench_all.invocations(source) == (
        ("--backend", "sqlite"),
        ("--backend", "postgresql"),
    )


def test_every_benchmark_of_the_repository_is_registered_and_placed(
    bench_all: ModuleType,
) -> None:
    modules = {path.stem.removeprefix("bench_") for path in (ROOT / "bench").glob("bench_*.py")}
    registered = set(bench_all.registered())
    assert registered == modules - bench_all.NOT_BENCHMARKS
    document = (ROOT / "BENCHMARKS.md").read_text()
    assert bench_all.unmarked(document, registered) == []
    for name in registered:
        assert document.count(bench_all.begin_marker(name)) == 1
        assert document.count(bench_all.end_marker(name)) == 1


def test_every_saved_result_renders_into_the_document_as_committed(
    bench_all: ModuleType,
) -> None:
    document = (ROOT / "BENCHMARKS.md").read_text()
    saved = [json.loads(path.read_text()) for path in (ROOT / "bench" / "results").glob("quick_*")]
    assert bench_all.render(document, saved) == document


def test_a_block_names_the_commit_and_the_arguments_of_each_run(bench_all: ModuleType) -> None:
    sqlite, postgres = _run(args=["--backend", "sqlite"]), _run(args=["--backend", "postgres"])
    text = bench_all.block(_result("hotpath", sqlite, postgres, local_changes=True))
    assert "**Measured at commit `abc123def456 + local changes`**" in text
    assert "`bench/bench_hotpath.py --backend sqlite`, 12.5 s:" in text
    assert "`bench/bench_hotpath.py --backend postgres`, 12.5 s:" in text
    assert "\n#### Its title" in text and "\n## Its title" not in text  # two levels down


def test_render_rewrites_only_between_each_marker_pair(bench_all: ModuleType) -> None:
    document = _document("api", "links")
    first = bench_all.render(document, [_result("links", commit="fff000")])
    assert "commit `fff000`" in first and "\nold\n" in first  # api's block is left alone
    assert first.replace(bench_all.block(_result("links", commit="fff000")), "old") == document
    again = bench_all.render(first, [_result("links", commit="0a0a0a")])
    assert "fff000" not in again and "commit `0a0a0a`" in again
    assert again.count("<!-- bench:links -->") == 1 and again.endswith("What limits links.\n")
    assert bench_all.render(again, [_result("links", commit="0a0a0a")]) == again


def test_a_benchmark_without_a_marker_pair_gets_a_section_at_the_end(
    bench_all: ModuleType,
) -> None:
    text = bench_all.render(_document("api"), [_result("fanout")])
    head, section = text.split("## bench_fanout.py\n\n")
    assert head.endswith("What limits api.\n\n")
    assert section.startswith("<!-- bench:fanout -->\n") and section.endswith(
        "<!-- /bench:fanout -->\n"
    )
    assert bench_all.unmarked(text, ["api", "fanout", "links"]) == ["links"]


def test_a_lone_or_repeated_marker_is_refused(bench_all: ModuleType) -> None:
    with pytest.raises(ValueError, match="only one marker"):
        bench_all.render("# B\n<!-- bench:api -->\n", [_result("api")])
    with pytest.raises(ValueError, match="more than once"):
        bench_all.render(_document("api", "api"), [_result("api")])


def test_a_failed_run_is_shown_as_failed(bench_all: ModuleType) -> None:
    failed = _run(returncode=1, markdown="", error_tail="Traceback: boom")
    text = bench_all.render(_document("crawl"), [_result("crawl", failed)])
    assert "**Failed** (exit 1)" in text and "Traceback: boom" in text


def test_a_result_saved_in_the_old_shape_still_renders(bench_all: ModuleType) -> None:
    old = {
        "bench": "links",
        "commit": "531e441f9dc8",
        "local_changes": False,
        "args": ["--bodies", "2000"],
        "started": "2026-12-03T13:19:11+00:00",
        "seconds": 8,
        "returncode": 0,
        "markdown": "| a | b |\n|---|---|\n| 1 | 2 |",
        "error_tail": "",
    }
    text = bench_all.block(old)
    assert "`bench/bench_links.py --bodies 2000`, 8 s:" in text and "| 1 | 2 |" in text


def test_a_json_document_printed_last_becomes_a_table(bench_all: ModuleType) -> None:
    output = '{"rep": 1}\n{\n "label": "hs",\n "medians": {"p50_s": 1.23456, "runs": [1, 2]}\n}\n'
    assert bench_all.as_markdown(output) == "\n".join(
        [
            "| metric | value |",
            "|---|---:|",
            "| label | hs |",
            "| medians.p50_s | 1.235 |",
            "| medians.runs | 1 · 2 |",
        ]
    )
    assert bench_all.as_markdown("| a |\n|---|\n") == "| a |\n|---|"
    assert bench_all.as_markdown("no table\n") == "```\nno table\n```"


def test_every_benchmark_says_its_quick_run_once() -> None:
    # `bench/all.py` reads the first `QUICK_ARGS` of the source; a second one would be the one
    # the module itself sees: two quick runs, silently different.
    twice = [
        path.name
        for path in sorted((ROOT / "bench").glob("bench_*.py"))
        if sum(line.startswith("QUICK_ARGS = ") for line in path.read_text().splitlines()) > 1
    ]
    assert twice == []
