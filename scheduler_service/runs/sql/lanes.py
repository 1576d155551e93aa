"""A thread pool with two lanes: work in the urgent lane is taken before any queued normal work;
and batches: calls that wait for a flush on the lanes, written together.

The run store's writes share its database threads (SQLite: one writer; PostgreSQL: a pool). A
flood of TriggerRuns queues there, and a crawler's report (a result that frees a slot, a step,
a lease renewal) waiting behind it would leave the crawler's slots idle while runs are pending:
crawler lifecycle writes go in the urgent lane. Order within a lane is FIFO.

Group commit (`Batcher`): calls that arrive while the database threads are busy wait in one
bounded queue, and the next flush takes up to `max_batch` of them and writes them in one
transaction (the `write` it is given), answering each caller with its own outcome after that
transaction's end. A flush never waits for the event loop; it answers every caller of its batch
in a `finally` (UNAVAILABLE if `write` failed). At most `flushes` flushes are queued or running at
once; a flush that leaves calls behind queues itself again, behind what else waits in its lane.
The queue is bounded (a caller past `max_waiting` is answered UNAVAILABLE at once), and closing
answers whatever still waits UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

import structlog

T = TypeVar("T")
W = TypeVar("W")
URGENT, NORMAL = 0, 1
log = structlog.get_logger(__name__)


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


class Batcher(Generic[W, T]):
    """Calls (`W`, answered with a `T`) waiting for a flush on `lanes`; `write` writes a batch
    and returns each call's outcome, an exception being that caller's error (see the module)."""

    def __init__(
        self,
        lanes: Lanes,
        write: Callable[[list[W]], Sequence[T | BaseException]],
        unavailable: Callable[[str], BaseException],
        *,
        urgent: bool = False,
        flushes: int = 1,
        max_batch: int = 50,
        max_waiting: int = 10_000,
    ) -> None:
        self._lanes = lanes
        self._write = write
        self._unavailable = unavailable
        self._urgent = urgent
        self._max_flushes = flushes
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._lock = threading.Lock()
        self._waiting: deque[tuple[W, asyncio.Future[T]]] = deque()
        #: Flushes queued in the lanes or running, at most `flushes`.
        self._flushes = 0
        self._closed = False

    @property
    def waiting(self) -> int:
        """Calls waiting for a flush."""
        return len(self._waiting)

    async def submit(self, work: W) -> T:
        """`work`'s outcome, once the batch it was written in has ended."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(work, future)
        return await future

    def close(self) -> None:
        """Accept no more calls (those waiting are still flushed, or answered by `fail`)."""
        with self._lock:
            self._closed = True

    def fail(self) -> None:
        """Answer every call still waiting UNAVAILABLE (the database threads are gone)."""
        with self._lock:
            left = list(self._waiting)
            self._waiting.clear()
        gone = self._unavailable("the scheduler is shutting down; retry")
        _answer([(future, gone) for _, future in left])

    def _enqueue(self, work: W, future: asyncio.Future[T]) -> None:
        with self._lock:
            if self._closed:
                raise self._unavailable("the scheduler is shutting down; retry")
            if len(self._waiting) >= self._max_waiting:
                raise self._unavailable("too many writes waiting for the run store; retry")
            self._waiting.append((work, future))
            start = self._flushes < self._max_flushes
            if start:
                self._flushes += 1
        if start:
            self._queue_flush()

    def _queue_flush(self) -> None:
        try:
            self._lanes.submit(self._flush, urgent=self._urgent)
        except RuntimeError:
            # The database threads are shut down: nothing will flush what waits.
            with self._lock:
                self._flushes -= 1
            self.fail()

    def _flush(self) -> None:
        """On a database thread: write one batch; then queue this flush again while calls are
        left."""
        try:
            batch = self._take()
            if batch:
                self._write_batch(batch)
        finally:
            with self._lock:
                more = bool(self._waiting)
                if not more:
                    self._flushes -= 1
            if more:
                self._queue_flush()

    def _take(self) -> list[tuple[W, asyncio.Future[T]]]:
        batch: list[tuple[W, asyncio.Future[T]]] = []
        with self._lock:
            while self._waiting and len(batch) < self._max_batch:
                work, future = self._waiting.popleft()
                # A caller that went away before its flush is not written (one cancelled
                # after this check is written, and its answer dropped).
                if not future.cancelled():
                    batch.append((work, future))
        return batch

    def _write_batch(self, batch: list[tuple[W, asyncio.Future[T]]]) -> None:
        outcomes: Sequence[T | BaseException] = []
        try:
            outcomes = self._write([work for work, _ in batch])
        except Exception:
            log.exception("store.batch_failed", size=len(batch))
        finally:
            # Every caller is answered, whatever happened: UNAVAILABLE if its outcome is unknown.
            unknown = self._unavailable("the run store is unavailable; retry")
            _answer(
                [
                    (future, outcomes[i] if i < len(outcomes) else unknown)
                    for i, (_, future) in enumerate(batch)
                ]
            )


def _answer(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """Settle the callers' futures on their event loop: one wake-up of the loop for a batch,
    not one per caller."""
    if not answers:
        return
    with contextlib.suppress(RuntimeError):  # a closed event loop: nobody waits any more
        answers[0][0].get_loop().call_soon_threadsafe(_settle_all, answers)


def _settle_all(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, outcome in answers:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
