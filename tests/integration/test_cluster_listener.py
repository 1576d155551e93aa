"""The cluster listener leaves no psycopg connection open when it is cancelled, wherever it is:
connecting to a server that accepted but never answers, or listening."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest

from scheduler_service.cluster.listener import Listener
from scheduler_service.cluster.notice import Notice
from tests.support import postgres


class Ignored:
    def notice(self, notice: Notice) -> None: ...

    def resynced(self) -> None: ...

    def lost(self) -> None: ...


@pytest.fixture
def pg_url(scheduler_pg_template: str) -> Iterator[str]:
    with postgres.clone(scheduler_pg_template) as url:
        yield url


@pytest.fixture
async def silent() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A port that accepts connections and never answers, and an event set once one came."""
    accepted = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], accepted
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


def _resource_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_cancelled_while_connecting(silent: tuple[int, asyncio.Event]) -> None:
    port, accepted = silent
    listener = Listener(f"postgresql+psycopg://ghpulse@127.0.0.1:{port}/x", "me", Ignored())
    task = asyncio.create_task(listener.run())
    await accepted.wait()
    await _cancel(task)
    assert listener.connections == 0
    assert _resource_warnings() == []


async def test_cancelled_while_listening(pg_url: str) -> None:
    listener = Listener(pg_url, "me", Ignored())
    task = asyncio.create_task(listener.run())
    await listener.listening.wait()
    await _cancel(task)
    assert listener.connections == 1
    assert _resource_warnings() == []
