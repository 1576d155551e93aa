"""Schedules as the scheduler sees them: frozen domain types, no protobuf, no SQL."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from common.jobs import JobSpec
from scheduler_service.schedules.timing import Timing

DEFAULT_CATCH_UP_WINDOW = timedelta(hours=1)
MAX_SCHEDULE_ID = 63
SCHEDULE_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class OverlapPolicy(StrEnum):
    #: A run of the same concurrency key is active: record the firing as skipped.
    SKIP = "skip"
    #: Queue one run behind the active one.
    QUEUE = "queue"


class FiringOutcome(StrEnum):
    #: Claimed by a scheduler process that has not recorded the outcome yet.
    PENDING = "pending"
    STARTED = "started"
    QUEUED = "queued"
    SKIPPED = "skipped"
    MISSED = "missed"


@dataclass(frozen=True)
class Template:
    """The TriggerRun request a schedule issues (the schedule's overlap is its conflict policy)."""

    spec: JobSpec
    labels: dict[str, str] = field(default_factory=dict)
    #: 0: the scheduler's default.
    max_attempts: int = 0


@dataclass(frozen=True)
class Schedule:
    id: str
    template: Template
    cron: str = ""
    interval: timedelta | None = None
    start_time: datetime | None = None
    time_zone: str = "UTC"
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catch_up_window: timedelta = DEFAULT_CATCH_UP_WINDOW
    jitter: timedelta = timedelta(0)
    paused: bool = False
    #: Only ticks after this fire (set at creation, on resume, and when the timing changes).
    fire_after: datetime | None = None
    last_fire_time: datetime | None = None
    last_run_id: str = ""
    skipped_count: int = 0
    missed_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: Incremented by every change made through the API.
    version: int = 0
    #: Token names of who created it and who last changed it ("" when unknown).
    created_by: str = ""
    updated_by: str = ""
    #: Kept by the store: the newest tick settled (fired or missed), and when the next one is due
    #: to run (None while paused); the claim of due schedules reads these, never the firings.
    last_nominal: datetime | None = None
    next_due: datetime | None = None

    @property
    def timing(self) -> Timing:
        return Timing(self.cron, self.interval, self.start_time, self.time_zone or "UTC")


@dataclass(frozen=True)
class Firing:
    """One tick of a schedule: unique per `(schedule_id, nominal_time)` across replicas."""

    schedule_id: str
    nominal_time: datetime
    outcome: FiringOutcome
    run_id: str = ""
    fire_time: datetime | None = None
    scheduler_id: str = ""
    error: str = ""


_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_schedule_id() -> str:
    """`sch-` and 16 random lowercase characters."""
    return "sch-" + "".join(_ALPHABET[b % 32] for b in os.urandom(16))
