"""Per-client limits of the client API: the TriggerRun rate (off unless configured) and open
WatchRun streams per run and per client. Exceeding one is RESOURCE_EXHAUSTED with a RetryInfo,
and a log line: a refused call is never silent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import structlog

from common.errors import ResourceExhausted

log = structlog.get_logger(__name__)

#: How soon a client told it has too many watchers may try again.
WATCH_RETRY = timedelta(seconds=1)
#: Buckets idle this long (full again) are forgotten, so the table stays small.
_IDLE_BUCKETS = 4096


@dataclass
class _Bucket:
    tokens: float
    at: float


class TriggerRate:
    """A token bucket per client: `rate` triggers per second, bursts of `burst`; `rate` 0: off."""

    def __init__(self, rate: float, burst: int, monotonic: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._monotonic = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def take(self, client: str) -> None:
        """Spend one trigger of `client`'s budget, or raise `ResourceExhausted`."""
        if self._rate <= 0:
            return
        now = self._monotonic()
        bucket = self._buckets.get(client) or _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        self._buckets[client] = bucket
        if len(self._buckets) > _IDLE_BUCKETS:
            self._forget_full(now)
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / self._rate
            log.warning("trigger.refused", client=client, limit=f"{self._rate:g}/s")
            raise ResourceExhausted(
                "too many TriggerRun calls; slow down",
                retry_after=timedelta(seconds=wait),
                limit=f"{self._rate:g}/s",
            )
        bucket.tokens -= 1

    def _forget_full(self, now: float) -> None:
        for client, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.at) * self._rate >= self._burst:
                del self._buckets[client]


class WatchLimits:
    """Counts open WatchRun streams per run and per client."""

    def __init__(self, per_run: int, per_client: int) -> None:
        self.per_run = per_run
        self.per_client = per_client
        self._runs: Counter[str] = Counter()
        self._clients: Counter[str] = Counter()

    @contextmanager
    def open(self, run_id: str, client: str) -> Iterator[None]:
        """Hold one watcher slot of `run_id` and of `client` for the block."""
        if self._runs[run_id] >= self.per_run:
            raise _refused("too many watchers of this run", self.per_run, run_id, client)
        if self._clients[client] >= self.per_client:
            raise _refused(
                "too many open WatchRun streams from this client", self.per_client, run_id, client
            )
        self._runs[run_id] += 1
        self._clients[client] += 1
        try:
            yield
        finally:
            for counter, key in ((self._runs, run_id), (self._clients, client)):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]


def _refused(message: str, limit: int, run_id: str, client: str) -> ResourceExhausted:
    log.warning("watch.refused", reason=message, limit=limit, run_id=run_id, client=client)
    return ResourceExhausted(message, retry_after=WATCH_RETRY, limit=str(limit))
