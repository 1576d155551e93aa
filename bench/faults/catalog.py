"""The faults of the suite: what each does, on which backends, how many tries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BACKENDS = ("sqlite", "postgresql")
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
#: Every REST path of the crawl (the control endpoint is never faulted).
ANY = "^/(repos|orgs|rate_limit)"


@dataclass(frozen=True)
class Fault:
    """One row of RELIABILITY.md per backend. `kind` selects the strike (`kill_crawler`,
    `kill_scheduler`, `storm`, `db_outage`); `storm` is what the fake GitHub is told to do at
    the start of the crawl (its faults API, `POST /_fake/faults`)."""

    name: str
    kind: str
    kills: bool = False
    backends: tuple[str, ...] = BACKENDS
    storm: list[dict[str, Any]] = field(default_factory=list)
    outage: float = 0.0


def _storm(**fault: Any) -> list[dict[str, Any]]:
    return [{"path": ANY, **fault}]


CATALOG = (
    Fault("kill -9 crawler", "kill_crawler", kills=True),
    Fault("kill -9 scheduler", "kill_scheduler", kills=True),
    Fault(
        "GitHub 403 secondary limit with retry-after",
        "storm",
        storm=_storm(
            kind="status",
            status=403,
            retry_after=1,
            count=6,
            message="You have exceeded a secondary rate limit.",
        ),
    ),
    Fault(
        "GitHub 403 secondary limit without retry-after",
        "storm",
        storm=_storm(
            kind="status", status=403, count=4, message="You have exceeded a secondary rate limit."
        ),
    ),
    Fault("GitHub 429", "storm", storm=_storm(kind="status", status=429, retry_after=1, count=6)),
    Fault("GitHub 502 bursts", "storm", storm=_storm(kind="status", status=502, count=5) * 3),
    Fault("GitHub slow answers (2 s)", "storm", storm=_storm(kind="slow", delay=2.0, count=12)),
    Fault("GitHub dropped connections", "storm", storm=_storm(kind="drop", count=5) * 2),
    Fault(
        "PostgreSQL outage (5 s, TCP proxy cut)", "db_outage", backends=("postgresql",), outage=5.0
    ),
)


def tries_for(fault: Fault, kill_tries: int, storm_tries: int) -> int:
    return kill_tries if fault.kills else storm_tries
