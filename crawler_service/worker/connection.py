"""The crawler's side of the scheduler <-> crawler protocol (`ghpulse.v1.WorkerService.Connect`).

One `Worker` holds one bidirectional stream to the scheduler: it says hello, receives assignments,
runs them (`AttemptTable`), renews their leases by heartbeat and sends step reports and results
through an `Outbox`. When the stream breaks, attempts keep running until their local lease deadline
and their reports stay buffered; the worker reconnects with backoff and re-attaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from importlib import metadata
from typing import Any

import grpc
import structlog

from common.client.config import replica_options
from common.lifecycle import Lifecycle
from common.proto.ghpulse.v1 import worker_service_pb2 as pb
from common.proto.ghpulse.v1 import worker_service_pb2_grpc as pb_grpc
from crawler_service.jobs.registry import JobRegistry
from crawler_service.settings import CrawlerSettings
from crawler_service.worker import messages as msg
from crawler_service.worker.attempts import DEFAULT_LEASE_TTL, AttemptTable
from crawler_service.worker.outbox import Outbox

#: Jitter from a generator of its own, not the `random` module's shared state.
_JITTER = random.Random()

log = structlog.get_logger(__name__)

#: The least time `stop` waits for buffered reports to reach the scheduler.
#: How long the scheduler gets to end the stream after the crawler's last write at shutdown.
CLOSE_TIMEOUT = 2.0
MIN_FLUSH_TIMEOUT = 1.0
_STREAM_ERRORS = (grpc.aio.AioRpcError, asyncio.InvalidStateError)
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


def _version() -> str:
    try:
        return metadata.version("ghpulse")
    except metadata.PackageNotFoundError:
        return "unknown"


def _now() -> float:
    return asyncio.get_running_loop().time()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def _channel_options(settings: CrawlerSettings) -> list[tuple[str, Any]]:
    # gRPC's own reconnect backoff (1s doubling up to 120s by default) would otherwise decide how
    # soon a restarted scheduler sees its crawlers again, whatever our own backoff says.
    first = max(1, int(settings.reconnect_backoff * 1000))
    return [
        # The scheduler address may list replicas (`ipv4:a:p,b:p`, `dns:///name:p`): spread the
        # crawlers over them, and reconnect to a live one when this stream's replica goes away.
        *replica_options(),
        ("grpc.initial_reconnect_backoff_ms", first),
        ("grpc.min_reconnect_backoff_ms", first),
        ("grpc.max_reconnect_backoff_ms", max(first, int(settings.reconnect_backoff_max * 1000))),
    ]


class Backoff:
    """Exponential reconnect delays with jitter: base, 2*base, ... up to `maximum`."""

    def __init__(self, base: float, maximum: float) -> None:
        self._base = base
        self._maximum = max(base, maximum)
        self._failures = 0

    def next(self) -> float:
        delay = min(self._maximum, self._base * 2 ** min(self._failures, 32))
        self._failures += 1
        # Jitter so that crawlers restarted together do not reconnect in lockstep.
        return _JITTER.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._failures = 0


class Worker(Lifecycle):
    """Connects this crawler to the scheduler and executes the attempts it assigns.

    Use as `async with Worker(settings, registry):` or call `start()` and, on SIGTERM, `stop()`.
    """

    def __init__(self, settings: CrawlerSettings, registry: JobRegistry) -> None:
        self._settings = settings
        self._outbox: Outbox[pb.ConnectRequest] = Outbox()
        self._attempts = AttemptTable(registry, self._outbox)
        self._write_lock = asyncio.Lock()
        self._call: Any = None
        self._channel: grpc.aio.Channel | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_interval = DEFAULT_LEASE_TTL / 3
        self._draining = False
        self._last_heard = 0.0
        self._stopping: asyncio.Future[None] | None = None
        #: Set while a welcomed stream to the scheduler is up.
        self.connected = asyncio.Event()

    def running(self) -> list[tuple[str, int]]:
        """The attempts executing now, as (run_id, attempt)."""
        return [(key.run_id, key.attempt) for key in self._attempts.running()]

    async def start(self) -> None:
        """Start connecting to the scheduler in the background."""
        if self._loop_task is not None:
            return
        self._channel = self._settings.scheduler_credentials().channel(
            self._settings.scheduler_addr, _channel_options(self._settings)
        )
        stub = pb_grpc.WorkerServiceStub(self._channel)
        self._loop_task = asyncio.create_task(self._connect_loop(stub), name="worker-connect")

    async def stop(self) -> None:
        """Drain: hand running attempts back (RELEASED), flush the reports, close the stream.

        Safe to call more than once (e.g. a second SIGTERM): later calls wait for the first.
        """
        if self._loop_task is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._drain_and_close())
        await asyncio.shield(self._stopping)

    async def _drain_and_close(self) -> None:
        self._draining = True
        await self._send_drain()
        await self._attempts.release_all(self._settings.shutdown_grace)
        await self._flush()
        await self._close()

    # -- connection ---------------------------------------------------------------------------

    async def _connect_loop(self, stub: pb_grpc.WorkerServiceAsyncStub) -> None:
        backoff = Backoff(self._settings.reconnect_backoff, self._settings.reconnect_backoff_max)
        while True:
            try:
                if await self._session(stub):
                    backoff.reset()
            except _STREAM_ERRORS as exc:
                log.info("worker.connect_failed", error=_describe(exc))
            except Exception:
                # A bug must not leave the crawler disconnected for good: log it and reconnect.
                log.exception("worker.session_crashed")
            delay = backoff.next()
            log.debug("worker.reconnecting", retry_in=round(delay, 3))
            await asyncio.sleep(delay)

    async def _session(self, stub: pb_grpc.WorkerServiceAsyncStub) -> bool:
        """One stream: hello, welcome, then serve it until it ends. True if it was welcomed."""
        call = stub.Connect()  # type: ignore[call-arg]  # grpc-stubs lacks the reader/writer style
        self._call = call
        try:
            await self._write(call, self._hello())
            if not self._accept_welcome(await call.read()):
                return False
            self.connected.set()
            log.info(
                "worker.connected",
                scheduler=self._settings.scheduler_addr,
                reattached=len(self._attempts),
                buffered=len(self._outbox),
            )
            if self._draining:
                await self._write(call, msg.drain())
            await self._serve(call)
            return True
        finally:
            if self.connected.is_set():
                level = log.info if self._draining else log.warning
                level("worker.disconnected", buffered=len(self._outbox))
            self.connected.clear()
            self._call = None
            call.cancel()

    def _hello(self) -> pb.ConnectRequest:
        settings = self._settings
        return msg.hello(settings.worker_id, settings.slots, self._attempts.held(), _version())

    def _accept_welcome(self, response: Any) -> bool:
        if response is _EOF:
            log.info("worker.connect_failed", error="stream closed before the welcome")
            return False
        which = response.WhichOneof("message")
        if which == "rejected":
            log.error(
                "worker.rejected",
                reason=response.rejected.reason,
                supported_protocol_version=response.rejected.supported_protocol_version,
                protocol_version=msg.PROTOCOL_VERSION,
            )
            return False
        if which != "welcome":
            log.error("worker.unexpected_message", message=which, expected="welcome")
            return False
        self._on_welcome(response.welcome)
        return True

    def _on_welcome(self, welcome: pb.WorkerWelcome) -> None:
        ttl = welcome.lease_ttl.ToTimedelta().total_seconds()
        self._attempts.lease_ttl = ttl if ttl > 0 else DEFAULT_LEASE_TTL
        interval = welcome.heartbeat_interval.ToTimedelta().total_seconds()
        self._heartbeat_interval = interval if interval > 0 else self._attempts.lease_ttl / 3
        # Whatever is not re-attached (abandoned, or unknown to the scheduler) is no longer ours.
        self._attempts.reattach(msg.key_from_pb(ref) for ref in welcome.reattached)

    async def _serve(self, call: Any) -> None:
        """Read, send and heartbeat until one of them ends (the stream broke or closed)."""
        tasks = [
            asyncio.create_task(self._read_loop(call), name="worker-read"),
            asyncio.create_task(self._send_loop(call), name="worker-send"),
            asyncio.create_task(self._heartbeat_loop(call), name="worker-heartbeat"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, _STREAM_ERRORS):
                log.info("worker.stream_error", error=_describe(outcome))
            elif isinstance(outcome, Exception):
                log.error("worker.stream_crashed", exc_info=outcome)

    async def _write(self, call: Any, message: pb.ConnectRequest) -> None:
        # A stream takes one write at a time; reports and heartbeats share it.
        async with self._write_lock:
            await call.write(message)

    async def _read_loop(self, call: Any) -> None:
        while (response := await call.read()) is not _EOF:
            self._last_heard = _now()
            self._on_response(response)

    async def _send_loop(self, call: Any) -> None:
        while True:
            entry = await self._outbox.get()
            try:
                await self._write(call, entry.item)
            except BaseException:
                # Unsent: keep it for the next stream, unless its attempt was let go meanwhile.
                if entry.ref in self._attempts:
                    self._outbox.requeue(entry)
                else:
                    self._outbox.ack(entry)
                raise
            self._outbox.ack(entry)
            if entry.item.HasField("result"):
                self._attempts.forget(msg.key_from_pb(entry.item.result.ref))

    async def _heartbeat_loop(self, call: Any) -> None:
        """Heartbeat until the scheduler has been silent for a whole lease TTL."""
        self._last_heard = _now()
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            if _now() - self._last_heard > self._attempts.lease_ttl:
                # A half-open connection never errors; unanswered heartbeats are how we notice.
                log.warning("worker.scheduler_silent", seconds=round(_now() - self._last_heard, 3))
                return
            held = self._attempts.held()
            free = max(0, self._settings.slots - len(held))
            await self._write(call, msg.heartbeat(held, free))

    def _on_response(self, response: pb.ConnectResponse) -> None:
        which = response.WhichOneof("message")
        if which == "assignment":
            if len(self._attempts) >= self._settings.slots:
                log.warning("worker.over_capacity", slots=self._settings.slots)
            self._attempts.assign(response.assignment, release=self._draining)
        elif which == "heartbeat_ack":
            for ref in response.heartbeat_ack.renewed:
                self._attempts.renew(msg.key_from_pb(ref))
        elif which == "cancel":
            key = msg.key_from_pb(response.cancel.ref)
            self._attempts.cancel(key, response.cancel.reason)
        elif which == "abandon":
            key = msg.key_from_pb(response.abandon.ref)
            self._attempts.abandon(key, response.abandon.reason or "abandoned by the scheduler")
        else:
            log.warning("worker.unexpected_message", message=which)

    # -- shutdown -----------------------------------------------------------------------------

    async def _send_drain(self) -> None:
        call = self._call
        if call is not None and self.connected.is_set():
            with contextlib.suppress(*_STREAM_ERRORS):
                await self._write(call, msg.drain())
        log.info("worker.draining", running=len(self._attempts.running()))

    async def _flush(self) -> None:
        timeout = max(self._settings.shutdown_grace, MIN_FLUSH_TIMEOUT)
        try:
            await asyncio.wait_for(self._outbox.wait_empty(), timeout)
        except TimeoutError:
            log.warning("worker.reports_lost", count=len(self._outbox))

    async def _close(self) -> None:
        call = self._call
        if call is not None:
            with contextlib.suppress(*_STREAM_ERRORS, TimeoutError):
                await call.done_writing()
                # Let the scheduler read what was written and end the stream: cancelling the
                # call at once could drop the last reports (e.g. a RELEASED result) in flight.
                await asyncio.wait_for(call.code(), CLOSE_TIMEOUT)
        await self._attempts.close()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        self._stopping = None
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
        log.info("worker.stopped")
