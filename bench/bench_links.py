"""Closing-reference extraction throughput (PR bodies per second).

Run: `.venv/bin/python bench/bench_links.py [--bodies N] [--runs R]`. Prints a markdown table with
the median of R runs over N generated bodies per corpus (deterministic: seeded generator).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from crawler_service.links import extract_closing_references

REPOSITORY = "octo/app"
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


def _measure(bodies: list[str]) -> float:
    start = time.perf_counter()
    for body in bodies:
        extract_closing_references(body, REPOSITORY)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bodies", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| corpus | bodies | avg body (chars) | median time (s) | bodies/s | MB/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, make in CORPORA.items():
        rng = random.Random(42)
        bodies = [make(rng) for _ in range(args.bodies)]
        size = sum(len(body) for body in bodies)
        elapsed = statistics.median(_measure(bodies) for _ in range(args.runs))
        print(
            f"| {name} | {len(bodies)} | {size / len(bodies):.0f} | {elapsed:.3f} "
            f"| {len(bodies) / elapsed:,.0f} | {size / elapsed / 1e6:.1f} |"
        )


if __name__ == "__main__":
    main()
