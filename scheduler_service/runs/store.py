"""The run store: the durable truth about runs, their steps, event logs and idempotency keys.

Every method is one atomic transaction; a state transition is durable before the method returns
(and so before any RPC acknowledges it). Invariants (one active and one queued run per concurrency
key, request-id uniqueness, the event log's `(run_id, seq)` key) are database constraints: several
scheduler processes may share one database.

Methods that change runs return a `Transition`: the events they appended (to publish to watchers),
and the attempts whose crawlers must be told to stop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from common.errors import GhpulseError
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    Disposition,
    LeaseLosses,
    NewRun,
    Run,
    RunEvent,
    RunQuery,
    StepReport,
)


class StopKind(StrEnum):
    #: Stop at the next safe point and report CANCELLED.
    CANCEL = "cancel"
    #: The attempt is no longer the crawler's: stop at once, report nothing more.
    ABANDON = "abandon"


@dataclass(frozen=True)
class StopRequest:
    """Tell the crawler `worker_id` to stop attempt `ref`."""

    worker_id: str
    ref: AttemptRef
    kind: StopKind
    reason: str


@dataclass
class Transition:
    """What a store write did, beyond the durable change itself."""

    #: The run addressed by the call, as it is after the transaction (None if there was none).
    run: Run | None = None
    #: Events appended, in commit order (possibly of several runs, e.g. a promoted queued run).
    events: list[RunEvent] = field(default_factory=list)
    stops: list[StopRequest] = field(default_factory=list)
    #: A run became dispatchable (created, promoted, retrying now or released).
    dispatchable: bool = False
    #: The run assigned to `Claim.worker_id` by the same transaction, if any (`finish_attempt`).
    claimed: Run | None = None

    def merge(self, other: Transition) -> None:
        self.events += other.events
        self.stops += other.stops
        self.dispatchable = self.dispatchable or other.dispatchable


@dataclass(frozen=True)
class Claim:
    """Assign a dispatchable run to this crawler in the same transaction as the trigger."""

    worker_id: str
    lease_ttl: timedelta


@dataclass(frozen=True)
class Created:
    run: Run
    disposition: Disposition
    transition: Transition
    #: The run assigned to `Claim.worker_id` (the oldest dispatchable one), if any.
    claimed: Run | None = None


@dataclass(frozen=True)
class Reattachment:
    reattached: list[AttemptRef]
    abandoned: list[AttemptRef]
    #: Runs the crawler held but no longer has (it restarted): retried or failed.
    transition: Transition


class RunStore(ABC):
    """The durable run store. Implementations: `SqlRunStore` (SQLite, PostgreSQL)."""

    @abstractmethod
    async def create_run(
        self, new: NewRun, now: datetime, idempotency_ttl: timedelta, claim: Claim | None = None
    ) -> Created:
        """Create a run for `new`, or resolve the conflict with the active run of its key.

        With `claim`, when the trigger made a run dispatchable, the oldest dispatchable run is also
        assigned to `claim.worker_id` in the same transaction (as `claim()` would): one durable
        write less between a trigger and its first step.

        With `new.request_id` set, a repeat within `idempotency_ttl` returns the first answer's run
        with `Disposition.IDEMPOTENT`; a repeat with another `payload_hash` raises
        `IdempotencyMismatch`. Conflict policies: JOIN returns the active run (`JOINED`); QUEUE
        creates the one queued run of the key (`QUEUED`) or returns it (`JOINED`); REJECT raises
        `RunConflict` carrying the active run's id.
        """

    @abstractmethod
    async def create_runs(
        self, news: Sequence[NewRun], now: datetime, idempotency_ttl: timedelta
    ) -> list[Created | GhpulseError]:
        """`create_run` for each of `news` (without `claim`), in one transaction: the results in
        order, each the run created (or resolved) or the error that trigger alone failed with
        (its changes undone, the others' kept). A schedule tick's runs are created this way."""

    @abstractmethod
    async def get_run(self, run_id: str) -> Run:
        """The run with its steps; raises `RunNotFound`."""

    @abstractmethod
    async def list_runs(self, query: RunQuery) -> list[Run]:
        """Runs matching `query`, newest first, at most `query.page_size + 1` (the extra one tells
        the caller there is a next page)."""

    @abstractmethod
    async def events_after(self, run_id: str, after_seq: int, limit: int = 1000) -> list[RunEvent]:
        """Stored events of `run_id` with `seq > after_seq`, in order, at most `limit`."""

    @abstractmethod
    async def claim(self, worker_id: str, now: datetime, lease_ttl: timedelta) -> Transition:
        """Assign the oldest dispatchable pending run to `worker_id` with a lease until
        `now + lease_ttl`; `Transition.run` is None when nothing is dispatchable."""

    async def record_step(
        self, ref: AttemptRef, worker_id: str, report: StepReport, now: datetime
    ) -> Transition:
        """Record a step event of attempt `ref`; raises `StaleAttempt` unless `ref` is the run's
        current attempt, running on `worker_id` (the fencing check)."""
        return await self.record_steps(ref, worker_id, [report], now)

    @abstractmethod
    async def record_steps(
        self, ref: AttemptRef, worker_id: str, reports: Sequence[StepReport], now: datetime
    ) -> Transition:
        """Record step events of attempt `ref` in order, in one transaction (fenced like
        `record_step`)."""

    @abstractmethod
    async def finish_attempt(
        self,
        ref: AttemptRef,
        worker_id: str,
        result: AttemptResult,
        now: datetime,
        claim: Claim | None = None,
        reports: Sequence[StepReport] = (),
    ) -> Transition:
        """End attempt `ref` (fenced like `record_step`), after recording its step events
        `reports` in the same transaction: succeeded, failed (retried with backoff
        while attempts remain if retryable), cancelled, or released (pending again without using
        up an attempt). A queued run of the key is promoted when the run finishes.

        With `claim`, the oldest dispatchable run is also assigned to `claim.worker_id` in the same
        transaction (`Transition.claimed`), for the slot the attempt frees: one durable write
        between a crawler's result and its next run."""

    @abstractmethod
    async def renew_leases(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> list[AttemptRef]:
        """Extend the leases of `refs` still held by `worker_id`; returns those renewed."""

    @abstractmethod
    async def reattach(
        self, worker_id: str, refs: list[AttemptRef], now: datetime, lease_ttl: timedelta
    ) -> Reattachment:
        """A (re)connecting crawler still executes `refs`: renew those it still holds, abandon the
        others, and retry runs it held but no longer lists."""

    @abstractmethod
    async def shorten_leases(self, worker_id: str, until: datetime) -> None:
        """The crawler's stream broke: its leases end at `until` unless it re-attaches first."""

    @abstractmethod
    async def cancel_run(self, run_id: str, reason: str, now: datetime, by: str = "") -> Transition:
        """Cancel: pending or queued runs at once; a running run is marked and its crawler asked
        to stop (`StopKind.CANCEL`). Already cancelled: no change. Finished: `RunFinished`. `by`
        (who asked) is recorded unless the run was already cancelled."""

    @abstractmethod
    async def retry_run(self, run_id: str, now: datetime, by: str = "") -> Transition:
        """Make a FAILED run pending again as a new attempt (with a fresh attempt budget), keeping
        its checkpoints, recording `by` (who asked). Raises `RunNotRetryable`, or `RunConflict` if
        its key is active again."""

    @abstractmethod
    async def expire(
        self, now: datetime, cancel_grace: timedelta, losses: LeaseLosses | None = None
    ) -> Transition:
        """Apply time: expired leases (retry or fail, the reason worded by `losses`), deadlines
        (FAILED, DEADLINE_EXCEEDED), cancellations past their grace (CANCELLED by force)."""

    @abstractmethod
    async def pending_cancels(self, worker_ids: list[str]) -> list[StopRequest]:
        """Running runs on these crawlers whose cancellation was requested (maybe by another
        scheduler process)."""

    @abstractmethod
    async def purge(self, finished_before: datetime, now: datetime) -> int:
        """Delete runs finished before `finished_before` and expired idempotency keys; returns
        the number of runs deleted."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""
