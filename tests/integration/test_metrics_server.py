"""`common.metrics.MetricsServer` on a real port: refresh before each scrape, HEAD, bad requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge

from common.metrics import MetricsServer, serve, split_listen


class Source:
    """A refresh hook that counts its calls and can be made to fail."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge("ghpulse_test_value", "A test gauge.", registry=registry)
        self.calls = 0
        self.closes = 0
        self.fail = False

    async def refresh(self) -> None:
        if self.fail:
            raise RuntimeError("database away")
        self.calls += 1
        self.gauge.set(self.calls)

    async def close(self) -> None:
        self.closes += 1


@pytest.fixture
async def served() -> AsyncIterator[tuple[MetricsServer, Source]]:
    registry = CollectorRegistry()
    source = Source(registry)
    server = await serve(registry, "127.0.0.1:0", source.refresh, source.close)
    yield server, source
    await server.stop()


async def test_each_scrape_refreshes_first(served: tuple[MetricsServer, Source]) -> None:
    server, source = served
    async with httpx.AsyncClient() as client:
        first = await client.get(server.url)
        second = await client.get(server.url)
        source.fail = True
        stale = await client.get(server.url)
    assert "ghpulse_test_value 1.0" in first.text
    assert "ghpulse_test_value 2.0" in second.text
    assert stale.status_code == 200 and "ghpulse_test_value 2.0" in stale.text


async def test_head_answers_without_a_body(served: tuple[MetricsServer, Source]) -> None:
    server, _ = served
    async with httpx.AsyncClient() as client:
        response = await client.head(server.url)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


async def test_garbage_is_dropped_and_serving_goes_on(served: tuple[MetricsServer, Source]) -> None:
    server, _ = served
    host, port = split_listen(server.address)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"\x16\x03\x01garbage\r\n\r\n")
    await writer.drain()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    async with httpx.AsyncClient() as client:
        assert (await client.get(server.url)).status_code == 200


async def test_stop_runs_close_once(served: tuple[MetricsServer, Source]) -> None:
    server, source = served
    await server.stop()
    await server.stop()
    assert source.closes == 1


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("[::1]:0", ("::1", 0)),
    ],
)
def test_split_listen(listen: str, expected: tuple[str, int]) -> None:
    assert split_listen(listen) == expected


def test_split_listen_rejects_a_missing_port() -> None:
    with pytest.raises(ValueError, match="host:port"):
        split_listen("localhost")
