"""The default jitter of schedules created without one: their period, at most an hour; each
tick's delay a hash of the schedule id and the tick, so a fleet of hourly schedules spreads over
the hour the same way on every replica and every restart."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from scheduler_service.schedules.due import DEFAULT_JITTER_MAX, default_jitter
from scheduler_service.schedules.timing import Timing, jitter_delay

NOW = datetime(2026, 1, 1, 9, 45, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("timing", "expected"),
    [
        (Timing(cron="30 * * * *"), HOUR),
        (Timing(cron="*/15 * * * *"), timedelta(minutes=15)),
        (Timing(interval=timedelta(minutes=1), start=NOW), timedelta(minutes=1)),
        (Timing(cron="0 9 * * *", time_zone="Europe/Berlin"), DEFAULT_JITTER_MAX),
        (Timing(interval=timedelta(days=2), start=NOW), DEFAULT_JITTER_MAX),
        (Timing(cron="0 0 30 2 *"), timedelta(0)),  # never fires
    ],
)
def test_default_jitter_is_the_period_at_most_an_hour(timing: Timing, expected: timedelta) -> None:
    assert default_jitter(timing, NOW) == expected


def test_an_hourly_fleet_spreads_over_the_hour() -> None:
    tick = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    delays = [jitter_delay(f"sch-{i:05d}", tick, HOUR) for i in range(1200)]
    assert all(timedelta(0) <= d < HOUR for d in delays)
    per_five_minutes = Counter(int(d / timedelta(minutes=5)) for d in delays)
    # 100 expected in each of the 12 slices; none is empty or crowded.
    assert sorted(per_five_minutes) == list(range(12))
    assert all(50 <= n <= 150 for n in per_five_minutes.values()), per_five_minutes


def test_the_delay_is_the_same_in_every_process() -> None:
    tick = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    # A fixed value: derived from the id and the tick only (sha256), never from the process.
    assert jitter_delay("config-org-acme", tick, HOUR) == timedelta(seconds=47, microseconds=731207)
