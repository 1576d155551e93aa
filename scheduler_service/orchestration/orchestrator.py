"""The run operations behind both gRPC services: the store is the truth; the broker, dispatcher
and crawler stops are told about every change after it is durable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import datetime
from typing import TypeVar

import structlog

from common.clock import Clock
from common.errors import GhpulseError
from scheduler_service.errors import StaleAttempt
from scheduler_service.orchestration.batching import StepBatches
from scheduler_service.orchestration.broker import EventBroker, Mailbox
from scheduler_service.orchestration.dispatch import Dispatcher, HeartbeatAcked, Welcome, WorkerConn
from scheduler_service.orchestration.quarantine import Quarantine, lease_losses
from scheduler_service.orchestration.tunables import NullMetrics, RunMetrics, Tunables
from scheduler_service.runs.model import (
    AttemptRef,
    AttemptResult,
    Disposition,
    EventKind,
    LeaseLosses,
    NewRun,
    Outcome,
    Run,
    RunEvent,
    RunQuery,
    RunState,
    StepReport,
)
from scheduler_service.runs.store import Claim, Created, RunStore, StopKind, StopRequest, Transition
from scheduler_service.runs.trigger import TriggerCommand, to_new_run

log = structlog.get_logger(__name__)
T = TypeVar("T")
#: While the cluster listener is up, every how many sweeps the sweep also runs a claim pass (an
#: idle claim pass is a transaction; notices and retry timers are what wake the dispatcher).
LIVE_KICK_EVERY = 10


def is_terminal(event: RunEvent) -> bool:
    return event.kind is EventKind.STATE_CHANGED and RunState(event.data["state"]).terminal


class Orchestrator:
    def __init__(
        self, store: RunStore, clock: Clock, tunables: Tunables, broker: EventBroker | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.tunables = tunables
        self.broker = broker or EventBroker()
        self.quarantine = Quarantine(
            clock,
            tunables.quarantine_losses,
            tunables.quarantine_window,
            tunables.quarantine_duration,
        )
        self.dispatcher = Dispatcher(self._claim, self.quarantine.holds)
        self._cancels_sent: set[AttemptRef] = set()
        self.steps = StepBatches(self._write_steps, tunables.step_batch_window.total_seconds())
        #: Crawlers whose stream broke and that have not come back, with when: their expired
        #: leases are retried as "disconnected", not as a silent crawler's.
        self._disconnected: dict[str, datetime] = {}
        self._creating: set[asyncio.Task[tuple[Run, Disposition]]] = set()
        self._sweeps = 0
        #: Set by `SchedulerApp` when it serves metrics (they read the dispatcher and broker).
        self.metrics: RunMetrics = NullMetrics()

    # -- applying transitions ----------------------------------------------------------------

    def apply(self, transition: Transition) -> None:
        """Tell watchers, crawlers, the dispatcher and the metrics what a durable transition did."""
        self.broker.publish(transition.events)
        self.metrics.observe(transition)
        for worker_id in lease_losses(transition):
            if self.dispatcher.get(worker_id) is not None:
                self.quarantine.lost(worker_id)
        for stop in transition.stops:
            self.dispatcher.stop(stop)
            if stop.kind is StopKind.CANCEL:
                self._cancels_sent.add(stop.ref)
        for event in transition.events:
            if event.kind is EventKind.STATE_CHANGED and "retry_at" in event.data:
                self.wake_at(datetime.fromisoformat(event.data["retry_at"]))
        if transition.dispatchable:
            self.dispatcher.kick()

    def wake_at(self, when: datetime) -> None:
        """A run backing off becomes dispatchable at `when`: wake the dispatcher then, rather
        than waiting for the next sweep."""
        delay = max(0.0, (when - self.clock.now()).total_seconds())
        asyncio.get_running_loop().call_later(delay, self.dispatcher.kick)

    # -- client operations ------------------------------------------------------------------

    async def trigger(self, command: TriggerCommand) -> tuple[Run, Disposition]:
        now = self.clock.now()
        new = to_new_run(
            command, now, self.tunables.default_max_attempts, self.tunables.default_deadline
        )
        # Shielded: once its transaction may have claimed a run for a crawler, the run must reach
        # that crawler even if the caller goes away (else it sits RUNNING on a crawler that never
        # got it until the lease expires, using up an attempt).
        task = asyncio.ensure_future(self._create(new, now))
        self._creating.add(task)
        task.add_done_callback(self._created)
        return await asyncio.shield(task)

    def _created(self, task: asyncio.Task[tuple[Run, Disposition]]) -> None:
        self._creating.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here too: the caller may have gone away and never see it.
            log.debug("run.trigger_failed", error=repr(task.exception()))

    async def _create(self, new: NewRun, now: datetime) -> tuple[Run, Disposition]:
        with self.dispatcher.reserve() as conn:
            # With a free crawler slot, the trigger's own transaction also dispatches.
            claim = Claim(conn.id, self.tunables.lease_ttl) if conn is not None else None
            created = await self.store.create_run(new, now, self.tunables.idempotency_ttl, claim)
        if conn is not None and created.claimed is not None:
            self.dispatcher.assign(conn, created.claimed)
        return self._triggered(new, created)

    async def trigger_many(
        self, commands: Sequence[TriggerCommand]
    ) -> list[tuple[Run, Disposition] | GhpulseError]:
        """`trigger` for each of `commands` in one transaction (a schedule tick's runs, see
        `RunStore.create_runs`): per command its run and disposition, or the error it alone
        failed with. Shielded like `trigger`: what the transaction did is always applied."""
        now, tunables = self.clock.now(), self.tunables
        limits = (tunables.default_max_attempts, tunables.default_deadline)
        news = [to_new_run(command, now, *limits) for command in commands]

        async def create() -> list[tuple[Run, Disposition] | GhpulseError]:
            results = await self.store.create_runs(news, now, tunables.idempotency_ttl)
            return [
                r if isinstance(r, GhpulseError) else self._triggered(new, r)
                for new, r in zip(news, results, strict=True)
            ]

        return await asyncio.shield(asyncio.ensure_future(create()))

    def _triggered(self, new: NewRun, created: Created) -> tuple[Run, Disposition]:
        self.apply(created.transition)
        self.metrics.triggered_run(new.spec.job_kind.value, created.disposition.value)
        log.info(
            "run.triggered",
            run_id=created.run.id,
            attempt=created.run.attempt,
            disposition=created.disposition.value,
            job=new.spec.job_kind.value,
            concurrency_key=new.concurrency_key,
        )
        return created.run, created.disposition

    async def get(self, run_id: str) -> Run:
        return await self.store.get_run(run_id)

    async def list_runs(self, query: RunQuery) -> list[Run]:
        return await self.store.list_runs(query)

    async def cancel(self, run_id: str, reason: str, by: str = "") -> Run:
        transition = await self.store.cancel_run(run_id, reason, self.clock.now(), by)
        self.apply(transition)
        assert transition.run is not None
        log.info(
            "run.cancel_requested",
            run_id=run_id,
            attempt=transition.run.attempt,
            state=transition.run.state.value,
        )
        return transition.run

    async def retry(self, run_id: str, by: str = "") -> Run:
        transition = await self.store.retry_run(run_id, self.clock.now(), by)
        self.apply(transition)
        assert transition.run is not None
        log.info("run.retried", run_id=run_id, attempt=transition.run.attempt)
        return transition.run

    async def watch(self, run_id: str, after_seq: int) -> AsyncIterator[Run | RunEvent]:
        """A snapshot, then every event after `after_seq` until the run's terminal event.

        One generator, not a snapshot one wrapping a following one: each event passes through
        one generator less on its way to each of the run's watchers."""
        mailbox = self.broker.subscribe(run_id, self.tunables.watch_poll.total_seconds())
        try:
            run = await _shielded(self.store.get_run(run_id))
            yield run
            if run.state.terminal and after_seq >= run.last_seq:
                return
            last = after_seq
            stored = await _shielded(self.store.events_after(run_id, last))
            while True:
                for event in stored:
                    if event.seq <= last:
                        continue
                    if event.seq > last + 1 and not _deliberate_gap(mailbox, last, event.seq):
                        missing = await _shielded(
                            self.store.events_after(run_id, last, event.seq - last - 1)
                        )
                        for filler in missing:
                            yield filler
                    yield event
                    last = event.seq
                    if is_terminal(event):
                        return
                # While other processes' events are pushed (`live`), waiting costs no query;
                # else the mailbox is poked once a quiet poll period.
                await mailbox.wait()
                stored = mailbox.drain()
                if not stored:
                    # Poked (the listener reconnected or went down) or a poll: pick up events
                    # written by another scheduler process.
                    stored = await _shielded(self.store.events_after(run_id, last))
        finally:
            self.broker.unsubscribe(mailbox)

    # -- crawler operations --------------------------------------------------------------------

    async def _claim(self, worker_id: str) -> Run | None:
        transition = await self.store.claim(worker_id, self.clock.now(), self.tunables.lease_ttl)
        self.apply(transition)
        return transition.run

    async def worker_connected(self, conn: WorkerConn, in_flight: list[AttemptRef]) -> None:
        now = self.clock.now()
        # Runs claimed for it while its stream was broken never reached it: re-attached with its
        # in-flight attempts (not lost, so not retried with an attempt used up), then sent.
        unsent = [
            run for run in self.dispatcher.take_undelivered(conn.id) if run.ref not in in_flight
        ]
        refs = [*in_flight, *(run.ref for run in unsent)]
        result = await self.store.reattach(conn.id, refs, now, self.tunables.lease_ttl)
        self._disconnected.pop(conn.id, None)
        conn.running = {ref.run_id: ref.attempt for ref in result.reattached}
        # A cancel pushed down an earlier stream may have been lost with it: the next sweep
        # pushes the cancels of the re-attached runs again.
        self._cancels_sent.difference_update(result.reattached)
        held = [ref for ref in result.reattached if ref in in_flight]
        abandoned = [ref for ref in result.abandoned if ref in in_flight]
        conn.send(Welcome(held, abandoned, now + self.tunables.lease_ttl))
        for run in unsent:
            if run.ref in result.reattached:
                conn.send(run)
        self.dispatcher.add(conn)
        self.apply(result.transition)
        log.info(
            "worker.connected",
            worker=conn.id,
            slots=conn.slots,
            reattached=len(result.reattached),
            abandoned=len(result.abandoned),
        )

    async def worker_disconnected(self, conn: WorkerConn) -> None:
        await self.steps.flush(conn.id)
        self.dispatcher.remove(conn)
        if self.dispatcher.get(conn.id) is None:
            self.quarantine.forget(conn.id)
            self._disconnected[conn.id] = self.clock.now()
            grace_end = self.clock.now() + self.tunables.reconnect_grace
            await self.store.shorten_leases(conn.id, grace_end)
        log.info("worker.disconnected", worker=conn.id, running=len(conn.running))

    async def heartbeat(self, conn: WorkerConn, in_flight: list[AttemptRef]) -> None:
        now = self.clock.now()
        conn.last_heartbeat_at = now
        # An idle crawler's heartbeat costs no transaction.
        renewed = (
            await self.store.renew_leases(conn.id, in_flight, now, self.tunables.lease_ttl)
            if in_flight
            else []
        )
        conn.send(HeartbeatAcked(renewed, now + self.tunables.lease_ttl))
        for ref in in_flight:
            if ref not in renewed:
                self._abandon(conn.id, ref, "lease not held")

    def _abandon(self, worker_id: str, ref: AttemptRef, reason: str) -> None:
        self.dispatcher.stop(StopRequest(worker_id, ref, StopKind.ABANDON, reason))
        log.info(
            "attempt.abandoned",
            run_id=ref.run_id,
            attempt=ref.attempt,
            worker=worker_id,
            reason=reason,
        )

    async def step_report(self, conn: WorkerConn, ref: AttemptRef, report: StepReport) -> None:
        """Batched (see `batching`): durable within the batch window or with the result."""
        self.steps.add(conn.id, ref, report)

    async def _write_steps(
        self, worker_id: str, ref: AttemptRef, reports: list[StepReport]
    ) -> None:
        try:
            transition = await self.store.record_steps(ref, worker_id, reports, self.clock.now())
        except StaleAttempt:
            self._abandon(worker_id, ref, "stale attempt")
            return
        self.apply(transition)

    async def attempt_result(
        self, conn: WorkerConn, ref: AttemptRef, result: AttemptResult
    ) -> None:
        # The slot this attempt frees is the crawler's next run's, claimed in the same
        # transaction (the attempt still counts as running until then, so no other claim takes it).
        reports = await self.steps.take(ref)
        claim = self._next_claim(conn, result)
        try:
            transition = await self.store.finish_attempt(
                ref, conn.id, result, self.clock.now(), claim, reports
            )
        except StaleAttempt:
            self._abandon(conn.id, ref, "stale attempt")
            return
        # With the claim made, the freed slot has its next run, or nothing was dispatchable: no
        # dispatch pass (and its transaction) for it.
        self.dispatcher.release(conn.id, ref, kick=claim is None)
        if transition.claimed is not None:
            self.dispatcher.assign(conn, transition.claimed)
        self.apply(transition)
        run = transition.run
        log.info(
            "attempt.finished",
            run_id=ref.run_id,
            attempt=ref.attempt,
            worker=conn.id,
            outcome=result.outcome.value,
            state=run.state.value if run else "",
        )

    def _next_claim(self, conn: WorkerConn, result: AttemptResult) -> Claim | None:
        if (
            conn.draining
            or result.outcome is Outcome.RELEASED
            or self.quarantine.holds(conn.id)
            or self.dispatcher.get(conn.id) is not conn
        ):
            return None
        return Claim(conn.id, self.tunables.lease_ttl)

    def _lease_losses(self, now: datetime) -> LeaseLosses:
        # Past a lease and its reconnect grace every lease of a gone crawler has expired: forget it.
        forget_before = now - self.tunables.lease_ttl - self.tunables.reconnect_grace * 2
        for worker_id, gone_at in list(self._disconnected.items()):
            if gone_at < forget_before:
                del self._disconnected[worker_id]
                self.dispatcher.take_undelivered(worker_id)  # their leases have expired too
        return LeaseLosses(self.tunables.lease_ttl, frozenset(self._disconnected))

    def drain(self, conn: WorkerConn) -> None:
        conn.draining = True
        log.info("worker.draining", worker=conn.id)

    # -- time ------------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire leases and deadlines, push cancels requested elsewhere, dispatch what is due."""
        now = self.clock.now()
        losses = self._lease_losses(now)
        self.apply(await self.store.expire(now, self.tunables.cancel_grace, losses))
        self._sweeps += 1
        if not self.broker.live:
            # Live, other replicas' cancels and dispatchable runs arrive by notice.
            await self.push_cancels()
            self.dispatcher.kick()
        elif self._sweeps % LIVE_KICK_EVERY == 0:
            # A claim pass now and then all the same: the safety net, not the path.
            self.dispatcher.kick()

    async def push_cancels(self) -> None:
        """Push the cancels requested through other scheduler processes to local crawlers."""
        local = [conn.id for conn in self.dispatcher.workers]
        pending = await self.store.pending_cancels(local)
        # Push each cancel requested through another scheduler process once, not every sweep.
        for stop in pending:
            if stop.ref not in self._cancels_sent:
                self.dispatcher.stop(stop)
        self._cancels_sent = {stop.ref for stop in pending}


async def _shielded(operation: Awaitable[T]) -> T:
    """Let a read finish even if the watcher goes away meanwhile, so its pooled connection is
    returned cleanly instead of being dropped mid-query."""
    return await asyncio.shield(operation)


def _deliberate_gap(mailbox: Mailbox, last: int, seq: int) -> bool:
    """Whether every seq between `last` and `seq` was a progress event replaced on purpose."""
    return all(missing in mailbox.coalesced for missing in range(last + 1, seq))
