r"""Closing-reference extraction throughput (PR bodies per second), against a trivial scan.

Run: `.venv/bin/python bench/bench_links.py [--bodies N] [--runs R]`. Prints a markdown table with
the median of R runs over N generated bodies per corpus (deterministic: seeded generator). Each run
also times the baseline, a trivial scan of the same bodies (`re.findall(r"#\d+", body)`, compiled
once), so the ratio extraction / baseline of each run compares across machines; the machine is
shared and noisy.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from collections.abc import Callable

from crawler_service.data.links import extract_closing_references

#: The quick run of `bench/all.py` (its registry).
QUICK_ARGS = ("--bodies", "2000", "--runs", "3")

REPOSITORY = "octo/app"
#: The baseline's scan: every `#<digits>`, with none of the keyword, code or comment rules.
HASH_NUMBER = re.compile(r"#\d+")
PROSE = (
    "This change reworks the cache invalidation so that stale entries are dropped when the "
    "upstream configuration changes. It also adds metrics for hit ratio and eviction counts. "
)
TEMPLATE = (
    "## Summary\n<!-- Describe your change. Use 'Fixes #123' to close an issue. -->\n{prose}\n\n"
    "## Related issues\n<!-- e.g. Closes #1 -->\n{refs}\n\n"
    "## Checklist\n- [x] tests\n- [ ] docs\n"
)
CODE = (
    "```python\ndef handler(event):\n    # fixes #999 in the old code path\n    return event\n```\n"
)


def _refs(rng: random.Random) -> str:
    forms = [
        lambda n: f"Fixes #{n}",
        lambda n: f"closes other/lib#{n}",
        lambda n: f"Resolves: https://github.com/octo/app/issues/{n}",
        lambda n: f"see #{n}",
        lambda n: f"fixes #{n}, #{n + 1}",
    ]
    return "\n".join(rng.choice(forms)(rng.randint(1, 5000)) for _ in range(rng.randint(1, 4)))


def plain(rng: random.Random) -> str:
    return PROSE * rng.randint(1, 4)


def template(rng: random.Random) -> str:
    return TEMPLATE.format(prose=PROSE * rng.randint(1, 3), refs=_refs(rng))


def code_heavy(rng: random.Random) -> str:
    inline = " Call `cache.fixes #1()` before `close #2`. "
    return template(rng) + CODE * rng.randint(1, 3) + inline * rng.randint(1, 3)


def mixed(rng: random.Random) -> str:
    return rng.choice([plain, template, template, code_heavy])(rng)


CORPORA: dict[str, Callable[[random.Random], str]] = {
    "plain prose, no keyword": plain,
    "PR template with comments + refs": template,
    "template + fenced/inline code": code_heavy,
    "mixed (1:2:1)": mixed,
}


def _extract(bodies: list[str]) -> float:
    """Seconds to extract the closing references of every body."""
    start = time.perf_counter()
    for body in bodies:
        extract_closing_references(body, REPOSITORY)
    return time.perf_counter() - start


def _scan(bodies: list[str]) -> float:
    """Seconds for the baseline's trivial scan of every body."""
    start = time.perf_counter()
    for body in bodies:
        HASH_NUMBER.findall(body)
    return time.perf_counter() - start


def _measure(bodies: list[str], runs: int) -> tuple[float, float, float]:
    """Median extraction seconds, median baseline seconds, median of the per-run ratios."""
    pairs = [(_extract(bodies), _scan(bodies)) for _ in range(runs)]
    return (
        statistics.median(extract for extract, _ in pairs),
        statistics.median(scan for _, scan in pairs),
        statistics.median(extract / scan for extract, scan in pairs),
    )


def _row(name: str, bodies: list[str], runs: int) -> str:
    size = sum(len(body) for body in bodies)
    extract, scan, ratio = _measure(bodies, runs)
    return (
        f"| {name} | {len(bodies)} | {size / len(bodies):.0f} | {len(bodies) / extract:,.0f} "
        f"| {size / extract / 1e6:.1f} | {len(bodies) / scan:,.0f} | {ratio:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bodies", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"Median of {args.runs} run(s); baseline: `#\\d+` scan of the same bodies, same run.\n")
    print(
        "| corpus | bodies | avg body (chars) | extraction bodies/s | extraction MB/s "
        "| baseline bodies/s | extraction / baseline |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, make in CORPORA.items():
        rng = random.Random(42)
        print(_row(name, [make(rng) for _ in range(args.bodies)], args.runs))


if __name__ == "__main__":
    main()
