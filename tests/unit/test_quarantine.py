"""The crawler quarantine on an injected clock: losses count within the window, the quarantine
ends after its duration, and a crawler whose stream ended starts afresh."""

from __future__ import annotations

from datetime import timedelta

from common.clock import ManualClock
from scheduler_service.orchestration.quarantine import Quarantine


def _quarantine(clock: ManualClock) -> Quarantine:
    return Quarantine(clock, losses=3, window=timedelta(minutes=10), duration=timedelta(minutes=5))


def test_losses_within_the_window_quarantine() -> None:
    clock = ManualClock()
    quarantine = _quarantine(clock)
    for _ in range(2):
        quarantine.lost("w")
        assert not quarantine.holds("w")
    quarantine.lost("w")
    assert quarantine.holds("w")
    assert not quarantine.holds("other")
    clock.advance(timedelta(minutes=5))
    assert not quarantine.holds("w")


def test_losses_spread_beyond_the_window_do_not() -> None:
    clock = ManualClock()
    quarantine = _quarantine(clock)
    for _ in range(5):
        quarantine.lost("w")
        clock.advance(timedelta(minutes=6))
    assert not quarantine.holds("w")


def test_a_reconnected_crawler_starts_afresh() -> None:
    clock = ManualClock()
    quarantine = _quarantine(clock)
    for _ in range(2):
        quarantine.lost("w")
    quarantine.forget("w")
    quarantine.lost("w")
    assert not quarantine.holds("w")
