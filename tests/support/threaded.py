"""Servers on an event loop of their own thread, for synchronous tests (hypothesis drives its
examples synchronously): the same in-process scheduler and crawler as `cluster`, reached with
blocking gRPC stubs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.support.cluster import Cluster, cluster

T = TypeVar("T")
#: Bound of one start or stop, so a broken server fails the test instead of hanging it.
STEP_TIMEOUT = 120.0


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(STEP_TIMEOUT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(STEP_TIMEOUT)
        self.loop.close()


@contextmanager
def threaded_cluster(
    tmp: Path, crawler: dict[str, Any], **scheduler: Any
) -> Iterator[tuple[Cluster, LoopThread]]:
    """A scheduler and one crawler (`crawler`: its settings) served from a background loop."""
    runner = LoopThread()
    manager = cluster(tmp, **scheduler)
    try:
        running = runner.run(manager.__aenter__())
        try:
            runner.run(running.add_crawler("fuzz-crawler", **crawler))
            yield running, runner
        finally:
            runner.run(manager.__aexit__(None, None, None))
    finally:
        runner.close()
