"""Statistics and the markdown report of the scheduler benchmark."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by the nearest-rank method."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median_of(per_rep: Sequence[Sequence[float]], q: float) -> float:
    """The median over repetitions of each repetition's `q`-th percentile."""
    return statistics.median(percentile(rep, q) for rep in per_rep)


@dataclass
class Row:
    metric: str
    value: str
    target: str
    reached: bool | None


@dataclass
class Report:
    """The rows of the results table plus free-text notes."""

    title: str
    setup: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, value: str, target: str = "", reached: bool | None = None) -> None:
        self.rows.append(Row(metric, value, target, reached))

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", *self.setup, ""]
        lines += ["| metric | median of reps | target | reached |", "|---|---:|---|:---:|"]
        for row in self.rows:
            mark = "" if row.reached is None else ("yes" if row.reached else "**no**")
            lines.append(f"| {row.metric} | {row.value} | {row.target} | {mark} |")
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines) + "\n"
