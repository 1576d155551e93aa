"""Prometheus exposition for both services: a per-app registry served over HTTP on the event loop.

Each app owns a `CollectorRegistry` (never the process-global one), so several apps in one process
(tests, `ghpulse up`) do not clash. `MetricsServer` is a minimal asyncio HTTP/1.1 handler rather
than `prometheus_client.start_http_server`'s thread, so that an async `refresh` (e.g. counting runs
in the database) runs on the app's loop right before each scrape, and stopping is an `await`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from common.lifecycle import Lifecycle

log = structlog.get_logger(__name__)

Hook = Callable[[], Awaitable[None]]
#: Paths that answer with the metrics (anything else is a 404).
METRICS_PATHS = frozenset({"/metrics", "/"})
#: Bounds on a scrape: reading the request, and the refresh before rendering.
READ_TIMEOUT = 10.0
REFRESH_TIMEOUT = 5.0
MAX_HEADER_LINES = 100


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 hosts in brackets) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not a host:port address: {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer(Lifecycle):
    """Serves `registry` at `/metrics` on `listen` (`host:port`; port 0 picks a free one).

    Use as `async with MetricsServer(...)` or `start()`/`stop()`. `refresh`, when given, is awaited
    before each scrape; if it fails or times out, the scrape still answers with the last values.
    `close`, when given, is awaited by `stop()` (to release what `refresh` reads from).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        listen: str,
        refresh: Hook | None = None,
        close: Hook | None = None,
    ) -> None:
        self.registry = registry
        self._listen = listen
        self._refresh = refresh
        self._close = close
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """`host:port` actually listened on (after `start`)."""
        host, _ = split_listen(self._listen)
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    async def start(self) -> None:
        host, port = split_listen(self._listen)
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics.listening", address=self.address)

    async def stop(self) -> None:
        """Stop listening, end open connections and run `close`."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await server.wait_closed()
        if self._close is not None:
            await self._close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, headers = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT)
            status, content_type, body = await self._answer(method, path, headers)
            writer.write(_response(status, content_type, body, head=method == "HEAD"))
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass  # a client that went away or spoke something else: nothing to answer
        finally:
            await _close(writer)

    async def _answer(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if path.split("?", 1)[0] not in METRICS_PATHS:
            return "404 Not Found", "text/plain", b"not found; try /metrics\n"
        await self._refreshed()
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        return "200 OK", content_type, encoder(self.registry)

    async def _refreshed(self) -> None:
        if self._refresh is None:
            return
        try:
            await asyncio.wait_for(self._refresh(), REFRESH_TIMEOUT)
        except Exception:
            log.warning("metrics.refresh_failed", exc_info=True)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    # Reset by the client meanwhile: closed all the same.
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    request_line = (await reader.readline()).decode("latin-1").split()
    if len(request_line) != 3:
        raise ValueError("not an HTTP request")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return request_line[0].upper(), request_line[1], headers


def _response(status: str, content_type: str, body: bytes, *, head: bool) -> bytes:
    head_lines = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head_lines.encode("latin-1") + (b"" if head else body)


async def serve(
    registry: CollectorRegistry,
    listen: str,
    refresh: Hook | None = None,
    close: Hook | None = None,
) -> MetricsServer:
    """A started `MetricsServer` (see there)."""
    server = MetricsServer(registry, listen, refresh, close)
    await server.start()
    return server
