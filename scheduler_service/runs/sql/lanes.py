"""A thread pool with two lanes: work in the urgent lane is taken before any queued normal work.

The run store's writes share its database threads (SQLite: one writer; PostgreSQL: a pool). A
flood of TriggerRuns queues there, and a crawler's report (a result that frees a slot, a step,
a lease renewal) waiting behind it would leave the crawler's slots idle while runs are pending:
crawler lifecycle writes go in the urgent lane. Order within a lane is FIFO.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
URGENT, NORMAL = 0, 1


class Lanes:
    """`threads` threads running submitted calls, urgent ones first."""

    def __init__(self, threads: int, name: str) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._closed = False
        self.size = threads
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], T], *, urgent: bool = False) -> Future[T]:
        if self._closed:
            raise RuntimeError("the database threads are shut down")
        future: Future[T] = Future()
        lane = URGENT if urgent else NORMAL
        self._queue.put((lane, next(self._order), (call, future)))
        return future

    def shutdown(self) -> None:
        """Run what is queued, then stop the threads."""
        self._closed = True
        for _ in self._threads:
            # After everything queued (the sentinels' lane sorts after both).
            self._queue.put((NORMAL + 1, next(self._order), None))
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while (item := self._queue.get()[2]) is not None:
            call, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
