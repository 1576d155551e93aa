"""Schedule time math: cron fields, day-of-week numbering, intervals, time zones and DST, catch-up
plans and jitter. Expected times are written out by hand."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from scheduler_service.schedules.timing import (
    ON_TIME_GRACE,
    Timing,
    TimingError,
    jitter_delay,
    next_run_time,
    parse_cron,
    plan_due,
    zone,
)

BERLIN = zone("Europe/Berlin")
NEW_YORK = zone("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def ticks(timing: Timing, after: datetime, count: int) -> list[datetime]:
    return list(timing.ticks(after, after + timedelta(days=3650), count))


def local(times: list[datetime], tz: object = BERLIN) -> list[str]:
    return [t.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") for t in times]  # type: ignore[arg-type]


# -- cron parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24 is outside 0-23"),
        ("* * 0 * *", "day-of-month: 0 is outside 1-31"),
        ("* * * 13 *", "month: 13 is outside 1-12"),
        ("* * * * 8", "day-of-week: 8 is outside 0-7"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("5-1 * * * *", "range '5-1' is backwards"),
        ("a * * * *", "minute: 'a' is not a number"),
        ("1,,2 * * * *", "empty list item"),
    ],
)
def test_invalid_cron_names_the_field(expression: str, message: str) -> None:
    with pytest.raises(TimingError, match=message):
        parse_cron(expression)


def test_cron_fields_lists_ranges_steps_and_names() -> None:
    cron = parse_cron("0,30 9-17/4 * jan-mar mon-fri")
    assert cron.minutes == (0, 30)
    assert cron.hours == (9, 13, 17)
    assert cron.months == frozenset({1, 2, 3})
    assert cron.weekdays == frozenset({1, 2, 3, 4, 5})
    assert not cron.every_hour


def test_day_of_week_uses_standard_cron_numbering() -> None:
    # 2026-01-04 is a Sunday. 0 and 7 are Sunday, 1 is Monday (APScheduler 3 counts Monday as 0).
    after = utc(2026, 1, 1)
    sunday = [utc(2026, 1, 4, 12), utc(2026, 1, 11, 12)]
    assert ticks(Timing(cron="0 12 * * 0"), after, 2) == sunday
    assert ticks(Timing(cron="0 12 * * 7"), after, 2) == sunday
    assert ticks(Timing(cron="0 12 * * 1"), after, 1) == [utc(2026, 1, 5, 12)]
    assert ticks(Timing(cron="0 12 * * sun"), after, 1) == [utc(2026, 1, 4, 12)]


def test_day_of_month_and_day_of_week_both_restricted_match_either() -> None:
    # 13th of the month OR Friday (standard cron): Fri 2026-01-02, Fri 01-09, Tue 01-13.
    timing = Timing(cron="0 0 13 * 5")
    assert ticks(timing, utc(2026, 1, 1), 3) == [utc(2026, 1, 2), utc(2026, 1, 9), utc(2026, 1, 13)]


def test_default_cron_is_half_past_every_hour() -> None:
    assert ticks(Timing(), utc(2026, 1, 1, 10, 30), 2) == [
        utc(2026, 1, 1, 11, 30),
        utc(2026, 1, 1, 12, 30),
    ]


def test_cron_that_never_matches_has_no_next_tick() -> None:
    assert Timing(cron="0 0 31 2 *").next_after(utc(2026, 1, 1)) is None


def test_leap_day_cron_finds_the_next_leap_year() -> None:
    assert Timing(cron="0 0 29 2 *").next_after(utc(2026, 1, 1)) == utc(2028, 2, 29)


def test_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(TimingError, match="unknown time zone 'Mars/Olympus'"):
        Timing(time_zone="Mars/Olympus").check()


# -- time zones and DST -------------------------------------------------------------------------


def test_cron_runs_in_its_time_zone() -> None:
    # 09:00 in Berlin in winter (CET, UTC+1) is 08:00 UTC.
    timing = Timing(cron="0 9 * * *", time_zone="Europe/Berlin")
    assert timing.next_after(utc(2026, 1, 10)) == utc(2026, 1, 10, 8)


@pytest.mark.parametrize(
    "start",
    [utc(2026, 3, 28, 20), utc(2026, 10, 24, 20)],
    ids=["spring-forward", "fall-back"],
)
def test_hourly_fires_once_per_real_hour_across_dst(start: datetime) -> None:
    timing = Timing(cron="30 * * * *", time_zone="Europe/Berlin")
    found = ticks(timing, start, 12)
    gaps = {later - earlier for earlier, later in itertools.pairwise(found)}
    assert gaps == {timedelta(hours=1)}
    assert found[0] == start + timedelta(minutes=30)


def test_hourly_across_fall_back_fires_both_half_past_two() -> None:
    timing = Timing(cron="30 * * * *", time_zone="Europe/Berlin")
    assert local(ticks(timing, utc(2026, 10, 25, 0), 3)) == [
        "2026-10-25 02:30 CEST",
        "2026-10-25 02:30 CET",
        "2026-10-25 03:30 CET",
    ]


def test_hourly_across_spring_forward_skips_the_missing_hour() -> None:
    timing = Timing(cron="30 * * * *", time_zone="Europe/Berlin")
    assert local(ticks(timing, utc(2026, 3, 29, 0), 2)) == [
        "2026-03-29 01:30 CET",
        "2026-03-29 03:30 CEST",
    ]


def test_daily_time_in_the_spring_gap_fires_at_the_next_valid_time() -> None:
    timing = Timing(cron="30 2 * * *", time_zone="Europe/Berlin")
    assert local(ticks(timing, utc(2026, 3, 27), 4)) == [
        "2026-03-27 02:30 CET",
        "2026-03-28 02:30 CET",
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:30 CEST",
    ]


def test_daily_time_in_the_fall_overlap_fires_once() -> None:
    timing = Timing(cron="30 2 * * *", time_zone="Europe/Berlin")
    assert local(ticks(timing, utc(2026, 10, 24), 3)) == [
        "2026-10-24 02:30 CEST",
        "2026-10-25 02:30 CEST",
        "2026-10-26 02:30 CET",
    ]


def test_new_york_daily_across_both_transitions() -> None:
    timing = Timing(cron="15 2 * * *", time_zone="America/New_York")
    assert local(ticks(timing, utc(2026, 3, 7, 12), 2), NEW_YORK) == [
        "2026-03-08 03:00 EDT",
        "2026-03-09 02:15 EDT",
    ]
    assert local(ticks(timing, utc(2026, 10, 31, 12), 2), NEW_YORK) == [
        "2026-11-01 02:15 EST",
        "2026-11-02 02:15 EST",
    ]


# -- intervals ----------------------------------------------------------------------------------


def test_interval_is_anchored_to_its_start_time() -> None:
    timing = Timing(interval=timedelta(minutes=45), start=utc(2026, 1, 1, 0, 10))
    assert timing.next_after(utc(2026, 1, 1, 1, 0)) == utc(2026, 1, 1, 1, 40)
    assert timing.next_after(utc(2026, 1, 1, 1, 40)) == utc(2026, 1, 1, 2, 25)
    assert timing.next_after(utc(2025, 12, 1)) == utc(2026, 1, 1, 0, 10)


def test_interval_ignores_dst_it_counts_real_time() -> None:
    timing = Timing(
        interval=timedelta(hours=1), start=utc(2026, 10, 25, 0), time_zone="Europe/Berlin"
    )
    assert ticks(timing, utc(2026, 10, 25, 0), 3) == [
        utc(2026, 10, 25, 1),
        utc(2026, 10, 25, 2),
        utc(2026, 10, 25, 3),
    ]


def test_interval_below_one_second_is_rejected() -> None:
    with pytest.raises(TimingError, match="at least 1 second"):
        Timing(interval=timedelta(milliseconds=500), start=utc(2026, 1, 1)).check()


# -- catch-up plans -----------------------------------------------------------------------------

HOURLY = Timing(cron="0 * * * *")


def test_nothing_due_before_the_next_tick() -> None:
    plan = plan_due(
        HOURLY, after=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 10, 59), window=timedelta(hours=1)
    )
    assert (plan.fire, plan.missed, plan.latest) == (None, (), None)


def test_on_time_tick_fires() -> None:
    plan = plan_due(
        HOURLY, after=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 11, 0, 1), window=timedelta(0)
    )
    assert plan.fire == utc(2026, 1, 1, 11)
    assert plan.missed == ()


def test_downtime_coalesces_into_the_latest_tick_within_the_window() -> None:
    # Down from 10:00 to 13:20: 11:00 and 12:00 were missed, 13:00 is 20 min late (window 1 h).
    plan = plan_due(
        HOURLY, after=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 13, 20), window=timedelta(hours=1)
    )
    assert plan.fire == utc(2026, 1, 1, 13)
    assert plan.missed == (utc(2026, 1, 1, 11), utc(2026, 1, 1, 12))


def test_tick_later_than_the_window_is_missed_too() -> None:
    plan = plan_due(
        HOURLY, after=utc(2026, 1, 1, 10), now=utc(2026, 1, 1, 13, 20), window=timedelta(minutes=10)
    )
    assert plan.fire is None
    assert plan.missed == (utc(2026, 1, 1, 11), utc(2026, 1, 1, 12), utc(2026, 1, 1, 13))
    assert plan.latest == utc(2026, 1, 1, 13)


def test_a_slightly_late_timer_is_not_a_misfire() -> None:
    now = utc(2026, 1, 1, 11) + ON_TIME_GRACE
    plan = plan_due(HOURLY, after=utc(2026, 1, 1, 10), now=now, window=timedelta(0))
    assert plan.fire == utc(2026, 1, 1, 11)


def test_long_outage_lists_at_most_limit_ticks_and_counts_the_rest() -> None:
    every_second = Timing(interval=timedelta(seconds=1), start=utc(2026, 1, 1))
    plan = plan_due(
        every_second,
        after=utc(2026, 1, 1),
        now=utc(2026, 1, 1, 1),
        window=timedelta(hours=1),
        limit=100,
    )
    assert plan.fire == utc(2026, 1, 1, 1)
    assert len(plan.missed) == 100
    assert len(plan.missed) + plan.uncounted + 1 == 3600


def test_long_outage_on_a_cron_counts_every_tick() -> None:
    minutely = Timing(cron="* * * * *")
    plan = plan_due(
        minutely, after=utc(2026, 1, 1), now=utc(2026, 1, 2), window=timedelta(hours=1), limit=10
    )
    assert plan.fire == utc(2026, 1, 2)
    assert len(plan.missed) + plan.uncounted + 1 == 1440


# -- jitter -------------------------------------------------------------------------------------


def test_jitter_is_bounded_and_the_same_everywhere() -> None:
    nominal = utc(2026, 1, 1, 11)
    delays = {jitter_delay(f"s{i}", nominal, timedelta(minutes=5)) for i in range(50)}
    assert all(timedelta(0) <= d < timedelta(minutes=5) for d in delays)
    assert len(delays) > 40
    assert jitter_delay("s1", nominal, timedelta(minutes=5)) == jitter_delay(
        "s1", nominal, timedelta(minutes=5)
    )
    assert jitter_delay("s1", nominal, timedelta(0)) == timedelta(0)


def test_jitter_delays_the_run_but_not_the_nominal_time() -> None:
    jitter = timedelta(minutes=5)
    delay = jitter_delay("s1", utc(2026, 1, 1, 11), jitter)
    assert delay > timedelta(0)
    run_at = next_run_time(HOURLY, utc(2026, 1, 1, 10), "s1", jitter)
    assert run_at == utc(2026, 1, 1, 11) + delay
    before = plan_due(
        HOURLY,
        after=utc(2026, 1, 1, 10),
        now=run_at - timedelta(microseconds=1),
        window=timedelta(hours=1),
        schedule_id="s1",
        jitter=jitter,
    )
    assert before.latest is None
    due = plan_due(
        HOURLY,
        after=utc(2026, 1, 1, 10),
        now=run_at,
        window=timedelta(hours=1),
        schedule_id="s1",
        jitter=jitter,
    )
    assert due.fire == utc(2026, 1, 1, 11)
