"""The scheduler process: store, orchestrator, sweep, schedules, gRPC services and metrics, wired
together here, with an explicit lifecycle."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import timedelta

import structlog

from common.clock import Clock, SystemClock
from common.grpc_server import ServerHost
from common.lifecycle import Lifecycle, wait_for_signal
from common.metrics import MetricsServer, serve
from common.proto.ghpulse.v1 import scheduler_service_pb2, worker_service_pb2
from common.proto.ghpulse.v1 import scheduler_service_pb2_grpc as sched_grpc
from common.proto.ghpulse.v1 import worker_service_pb2_grpc as worker_grpc
from scheduler_service.api.limits import TriggerRate, WatchLimits
from scheduler_service.api.runs import RunHandlers
from scheduler_service.api.schedules import ScheduleHandlers
from scheduler_service.api.service import SchedulerService
from scheduler_service.api.workers import WorkerServicer
from scheduler_service.cluster.feed import ClusterFeed
from scheduler_service.cluster.listener import Listener
from scheduler_service.cluster.presence import Presence
from scheduler_service.cluster.registry import SqlWorkerRegistry
from scheduler_service.db import migrations
from scheduler_service.metrics import SchedulerMetrics
from scheduler_service.orchestration.orchestrator import Orchestrator
from scheduler_service.orchestration.sweeper import Sweeper
from scheduler_service.orchestration.tunables import Tunables
from scheduler_service.runs.retries import RetryPolicy
from scheduler_service.runs.sql.store import SqlRunStore
from scheduler_service.schedules.component import Schedules, default_scheduler_id
from scheduler_service.schedules.firing import FiringMetrics
from scheduler_service.settings import SchedulerSettings

log = structlog.get_logger(__name__)
#: How long background loops get to finish their current transaction at shutdown.
STOP_TIMEOUT = 10.0
#: How long start-up waits for the cluster listener's first connection (it keeps trying after).
LISTEN_TIMEOUT = 5.0
SERVICE_NAMES = (
    scheduler_service_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def tunables_from(settings: SchedulerSettings) -> Tunables:
    return Tunables(
        lease_ttl=_seconds(settings.lease_ttl),
        heartbeat_interval=_seconds(settings.heartbeat_interval),
        reconnect_grace=_seconds(settings.reconnect_grace),
        cancel_grace=_seconds(settings.cancel_grace),
        idempotency_ttl=_seconds(settings.idempotency_ttl),
        default_deadline=_seconds(settings.run_deadline),
        default_max_attempts=settings.max_attempts,
        watch_poll=_seconds(settings.sweep_interval),
        quarantine_losses=settings.quarantine_losses,
        quarantine_window=_seconds(settings.quarantine_window),
        quarantine_duration=_seconds(settings.quarantine_duration),
    )


def _advertised(address: str) -> str:
    """The listen address as others reach it: a wildcard host becomes this host's name."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = socket.gethostname()
    return f"{host}:{port}"


class SchedulerApp(Lifecycle):
    """`async with SchedulerApp(settings) as app:` serves until the block exits."""

    def __init__(self, settings: SchedulerSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        retry = RetryPolicy(_seconds(settings.retry_backoff), _seconds(settings.retry_backoff_max))
        self.store = SqlRunStore.open(
            settings.db,
            retry,
            pool_size=settings.db_pool_size,
            async_pool_size=settings.db_async_pool_size,
            group_commit=settings.group_commit,
        )
        self.orchestrator = Orchestrator(self.store, self.clock, tunables_from(settings))
        self.sweeper = Sweeper(
            self.orchestrator,
            self.clock,
            _seconds(settings.sweep_interval),
            _seconds(settings.retention),
        )
        self.firing_metrics = FiringMetrics()
        self.schedules = Schedules(
            settings, self.store, self.orchestrator, self.clock, metrics=self.firing_metrics
        )
        self.presence = Presence(
            SqlWorkerRegistry(*self.store.async_engines()),
            settings.scheduler_id or default_scheduler_id(),
            settings.advertise_addr,
            self.clock,
            _seconds(settings.workers_refresh),
            lambda: self.orchestrator.dispatcher.workers,
        )
        self.workers_api = WorkerServicer(
            self.orchestrator, settings.max_crawler_slots, self.presence
        )
        self.host = ServerHost(
            settings.listen,
            SERVICE_NAMES,
            self._register,
            grace=settings.shutdown_grace,
            security=settings.server_security(),
        )
        self.feed, self.listener = self._cluster()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening: asyncio.Task[None] | None = None
        self.metrics_server: MetricsServer | None = None

    def _cluster(self) -> tuple[ClusterFeed | None, Listener | None]:
        """The feed and listener of other replicas' notices (PostgreSQL; none on SQLite)."""
        notifier = self.store.notifier
        if notifier is None:
            return None, None
        orchestrator = self.orchestrator
        feed = ClusterFeed(
            orchestrator.broker,
            self.store.events_after,
            orchestrator.dispatcher.kick,
            orchestrator.wake_at,
            orchestrator.push_cancels,
            self.schedules.timer.changed,
        )
        url = self.settings.notify_db or self.settings.db
        return feed, Listener(url, notifier.sender, feed)

    def _register(self, server: object) -> None:
        settings = self.settings
        runs = RunHandlers(
            self.orchestrator,
            TriggerRate(settings.trigger_rate, settings.trigger_burst, time.monotonic),
            WatchLimits(settings.max_watchers_per_run, settings.max_watchers_per_client),
            self.presence,
        )
        service = SchedulerService(runs, ScheduleHandlers(self.schedules.ops))
        sched_grpc.add_SchedulerServiceServicer_to_server(
            service,
            server,  # type: ignore[arg-type]
        )
        worker_grpc.add_WorkerServiceServicer_to_server(
            self.workers_api,
            server,  # type: ignore[arg-type]
        )

    @property
    def address(self) -> str:
        return self.host.address

    async def start(self) -> None:
        # Before anything is opened: a refused configuration exits at once, in one line.
        self.host.check_exposure()
        try:
            await self._start()
        except BaseException:
            # E.g. the port is taken: stop the loops, timers and database threads started so far.
            await self.stop()
            raise

    async def _start(self) -> None:
        if self.settings.migrate:
            await asyncio.to_thread(migrations.upgrade, self.settings.db)
        self._tasks = [
            asyncio.create_task(self.orchestrator.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(self.sweeper.run(), name="sweeper"),
        ]
        await self._listen()
        await self.schedules.start()
        await self.host.start()
        self.presence.replica_address = self.settings.advertise_addr or _advertised(self.address)
        self._tasks.append(asyncio.create_task(self.presence.run(), name="workers-presence"))
        self.metrics_server = await self._serve_metrics()
        log.info("scheduler.started", address=self.address)

    async def _listen(self) -> None:
        if self.listener is None:
            return
        self._listening = asyncio.create_task(self.listener.run(), name="cluster-listener")
        try:
            await asyncio.wait_for(self.listener.listening.wait(), LISTEN_TIMEOUT)
        except TimeoutError:
            # Served anyway: the sweep and the watchers' slow poll cover until it connects.
            log.warning("cluster.not_listening_yet", timeout=LISTEN_TIMEOUT)

    async def _serve_metrics(self) -> MetricsServer | None:
        """Serve the Prometheus metrics on `metrics_listen` (None: metrics off), the orchestrator
        reporting to them and the schedule firings' counter beside them."""
        if not self.settings.metrics_listen:
            return None
        metrics = SchedulerMetrics(self.settings.db, self.store)
        metrics.registry.register(self.firing_metrics.registry)
        metrics.attach(self.orchestrator.dispatcher, self.orchestrator.broker)
        self.orchestrator.metrics = metrics
        return await serve(
            metrics.registry, self.settings.metrics_listen, metrics.refresh, metrics.close
        )

    async def stop(self) -> None:
        """Health NOT_SERVING, then drain in-flight RPCs for the grace period, then stop."""
        await self.host.mark_not_serving()
        for conn in self.orchestrator.dispatcher.workers:
            conn.close()
        await self.host.stop()
        await self._streams_closed()
        await self.schedules.stop()
        self.orchestrator.dispatcher.close()
        self.sweeper.close()
        self.presence.close()
        _done, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stop_listening()
        await self.store.close()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        log.info("scheduler.stopped")

    async def _streams_closed(self) -> None:
        """Before the store closes: the crawlers' streams unregister them from the database."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.workers_api.closed()
        except TimeoutError:
            log.warning("scheduler.streams_not_closed", timeout=STOP_TIMEOUT)

    async def _stop_listening(self) -> None:
        if self._listening is not None:
            # Only reads notices: cancelling it interrupts no transaction.
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)
        if self.feed is not None:
            await self.feed.close()


async def run_forever(settings: SchedulerSettings) -> None:
    async with SchedulerApp(settings):
        await wait_for_signal()
