"""Runs as the scheduler sees them: frozen domain types, no protobuf, no SQL."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from common.jobs import JobSpec
from common.logging import redact_text, redact_value

JSON = dict[str, Any]


class RunState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
TERMINAL_STATES = tuple(sorted(_TERMINAL))


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Trigger(StrEnum):
    API = "api"
    SCHEDULE = "schedule"
    BACKFILL = "backfill"


class ConflictPolicy(StrEnum):
    JOIN = "join"
    QUEUE = "queue"
    REJECT = "reject"


class Disposition(StrEnum):
    CREATED = "created"
    JOINED = "joined"
    QUEUED = "queued"
    IDEMPOTENT = "idempotent"


class EventKind(StrEnum):
    STATE_CHANGED = "state_changed"
    STEP_STARTED = "step_started"
    STEP_PROGRESS = "step_progress"
    STEP_FINISHED = "step_finished"


class Outcome(StrEnum):
    """How an attempt ended, as its crawler reported it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RELEASED = "released"


@dataclass(frozen=True)
class RunError:
    """Why an attempt or run failed. Its texts are redacted (URL credentials, registered secrets)
    whatever their source: the crawler redacts its reports, the scheduler again before storing."""

    code: str
    message: str
    retryable: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", redact_text(self.code))
        object.__setattr__(self, "message", redact_text(self.message))

    def to_json(self) -> JSON:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}

    @classmethod
    def from_json(cls, data: JSON | None) -> RunError | None:
        if not data:
            return None
        return cls(data["code"], data["message"], bool(data.get("retryable", False)))


@dataclass(frozen=True)
class LeaseLosses:
    """Why leases expire, as the process applying time knows it: the lease TTL, and the crawlers
    whose stream broke and that did not come back. It words the truthful retry reasons."""

    lease_ttl: timedelta | None = None
    disconnected: frozenset[str] = frozenset()

    def error(self, worker_id: str) -> RunError:
        """The retryable WORKER_LOST error of an attempt of `worker_id` whose lease expired."""
        if worker_id in self.disconnected:
            return RunError("WORKER_LOST", f"crawler {worker_id} disconnected", True)
        within = "" if self.lease_ttl is None else f" for {self.lease_ttl.total_seconds():g}s"
        message = f"lease expired: no heartbeat from crawler {worker_id} renewed it{within}"
        return RunError("WORKER_LOST", message, True)


@dataclass(frozen=True)
class AttemptRef:
    """The fencing token of an assignment."""

    run_id: str
    attempt: int


@dataclass(frozen=True)
class StepStatus:
    name: str
    state: StepState
    current: int = 0
    total: int = 0
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempt: int = 0
    #: The checkpoint: set once the step succeeded.
    output: JSON | None = None


@dataclass(frozen=True)
class Run:
    id: str
    spec: JobSpec
    state: RunState
    concurrency_key: str
    attempt: int
    max_attempts: int
    created_at: datetime
    trigger: Trigger = Trigger.API
    labels: dict[str, str] = field(default_factory=dict)
    steps: tuple[StepStatus, ...] = ()
    output: JSON | None = None
    error: RunError | None = None
    schedule_id: str = ""
    nominal_time: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    not_before: datetime | None = None
    last_seq: int = 0
    worker_id: str = ""
    lease_expires_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    #: Token names (see `common.auth.caller.Caller.name`) of who triggered, cancelled, retried.
    triggered_by: str = ""
    cancelled_by: str = ""
    retried_by: str = ""
    #: Fan-out (see `common.jobs.fanout`): a child's parent; a parent's children and those ended.
    parent_run_id: str = ""
    children_total: int = 0
    children_done: int = 0

    @property
    def ref(self) -> AttemptRef:
        return AttemptRef(self.id, self.attempt)

    def completed_steps(self) -> list[StepStatus]:
        return [s for s in self.steps if s.state is StepState.SUCCEEDED and s.output is not None]


@dataclass(frozen=True)
class NewRun:
    """A validated TriggerRun request."""

    spec: JobSpec
    concurrency_key: str
    policy: ConflictPolicy
    max_attempts: int
    labels: dict[str, str]
    trigger: Trigger = Trigger.API
    request_id: str = ""
    payload_hash: str = ""
    deadline_at: datetime | None = None
    schedule_id: str = ""
    nominal_time: datetime | None = None
    triggered_by: str = ""


@dataclass(frozen=True)
class RunEvent:
    """One entry of a run's append-only event log; `data` is the kind-specific payload."""

    run_id: str
    seq: int
    time: datetime
    attempt: int
    kind: EventKind
    data: JSON

    @property
    def step(self) -> str:
        return str(self.data.get("step", ""))


@dataclass(frozen=True)
class StepReport:
    """A step event reported by a crawler for one attempt."""

    kind: EventKind
    step: str
    current: int = 0
    total: int = 0
    message: str = ""
    state: StepState = StepState.RUNNING
    output: JSON | None = None

    def __post_init__(self) -> None:
        # Stored and shown to every watcher: redacted here too, not only by the crawler.
        object.__setattr__(self, "message", redact_text(self.message))
        object.__setattr__(self, "output", redact_value(self.output))


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    output: JSON | None = None
    error: RunError | None = None
    #: RELEASED only: the run is dispatched again no sooner than this (None: at once); `error`
    #: says why (e.g. REPOSITORY_BUSY).
    retry_after: timedelta | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", redact_value(self.output))


@dataclass(frozen=True)
class RunQuery:
    """Filters and page of ListRuns."""

    jobs: tuple[str, ...] = ()
    states: tuple[RunState, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    concurrency_key: str = ""
    trigger: Trigger | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    #: Only the children of this fan-out parent.
    parent_run_id: str = ""
    page_size: int = 50
    #: Keyset cursor: (created_at, id) of the last run of the previous page.
    after: tuple[datetime, str] | None = None


_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_run_id() -> str:
    """A sortable, unique run id: `run_` + 48-bit millisecond time + 80 random bits (Crockford)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "run_" + "".join(reversed(chars))
