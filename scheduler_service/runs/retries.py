"""When a failed attempt runs again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: `backoff` after the first failure, doubling, capped at `maximum`."""

    backoff: timedelta = timedelta(seconds=5)
    maximum: timedelta = timedelta(minutes=5)

    def delay(self, failed_attempts: int) -> timedelta:
        """The wait before the next attempt, after `failed_attempts` (>= 1) failures in a row."""
        factor = 2 ** max(0, failed_attempts - 1)
        delay: timedelta = min(self.maximum, self.backoff * factor)
        return delay
