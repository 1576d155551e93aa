"""Schedule time math, pure: 5-field cron in a time zone (with DST rules), anchored intervals, and
which ticks are due, late or missed. No I/O, no clock: every function takes the times it needs.

DST rules for cron (the usual cron behaviour, made explicit):
- A schedule whose hour field is `*` is a "per real hour" schedule: a wall time that occurs twice
  (fall back) fires twice (they are different hours), one that does not exist (spring forward) does
  not fire (the real hour is covered by the next match).
- A schedule with specific hours names a time of day: a time that occurs twice fires once (at its
  first occurrence); one that does not exist fires at the next valid time (the end of the gap).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.errors import quote

DEFAULT_CRON = "30 * * * *"
#: How far ahead `next_after` searches before concluding a cron never fires (Feb 29 on a Monday
#: recurs within 28 years).
_HORIZON_DAYS = 366 * 29
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class TimingError(ValueError):
    """A cron expression, interval or time zone that cannot be used."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    #: The first name's value (1 for months, 0 for days).
    names_from: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day-of-week", 0, 7, _DAYS, 0),
)


def _value(text: str, spec: _Field) -> int:
    lowered = text.lower()
    if lowered in spec.names:
        return spec.names.index(lowered) + spec.names_from
    if not text.isdigit():
        raise TimingError(f"{spec.name}: {quote(text)} is not a number")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise TimingError(f"{spec.name}: {value} is outside {spec.low}-{spec.high}")
    return value


def _part(text: str, spec: _Field) -> set[int]:
    base, _, step_text = text.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise TimingError(f"{spec.name}: step {quote(step_text)} must be a positive number")
        step = int(step_text)
    if base == "*":
        low, high = spec.low, spec.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _value(first, spec), _value(last, spec)
        if low > high:
            raise TimingError(f"{spec.name}: range {quote(base)} is backwards")
    else:
        low = _value(base, spec)
        high = spec.high if step_text else low
    return set(range(low, high + 1, step))


def _parse_field(text: str, spec: _Field) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise TimingError(f"{spec.name}: empty list item")
        values |= _part(part, spec)
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression (day-of-week 0-7, Sunday being 0 and 7)."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    #: Whether the hour field is `*`: a per-real-hour schedule (see the module's DST rules).
    every_hour: bool
    days_restricted: bool
    weekdays_restricted: bool

    def matches_date(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        # Standard cron: when both day fields are restricted, either may match.
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays


def parse_cron(expression: str) -> Cron:
    """Parse `expression`; raises TimingError naming the bad field."""
    parts = expression.split()
    if len(parts) != 5:
        raise TimingError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
    minutes, hours, days, months, weekdays = (
        _parse_field(text, spec) for text, spec in zip(parts, _FIELDS, strict=True)
    )
    weekdays = frozenset(day % 7 for day in weekdays)
    return Cron(
        expression=" ".join(parts),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=days,
        months=months,
        weekdays=weekdays,
        every_hour=parts[1] == "*",
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (empty: UTC); raises TimingError."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimingError(f"unknown time zone {quote(name)}") from exc


def _instants(wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the naive local time `wall` occurs: 0 (gap), 1, or 2 (fold)."""
    found = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == wall and instant not in found:
            found.append(instant)
    return sorted(found)


def _gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant after the DST gap that swallows the naive local time `wall`."""
    earliest = min(wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    offset = earliest.astimezone(tz).utcoffset()
    candidate = earliest.replace(second=0, microsecond=0)
    while candidate.astimezone(tz).utcoffset() == offset:
        candidate += timedelta(minutes=1)
    return candidate


def _day_ticks(cron: Cron, day: date, tz: ZoneInfo) -> list[datetime]:
    ticks: set[datetime] = set()
    for hour in cron.hours:
        for minute in cron.minutes:
            wall = datetime.combine(day, time(hour, minute))
            instants = _instants(wall, tz)
            if not instants:
                if not cron.every_hour:
                    ticks.add(_gap_end(wall, tz))
            elif cron.every_hour:
                ticks.update(instants)
            else:
                ticks.add(instants[0])
    return sorted(ticks)


def cron_ticks(cron: Cron, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The ticks strictly after `after` (UTC), oldest first (ends if none within the horizon)."""
    day = after.astimezone(tz).date() - timedelta(days=1)
    last, idle = after, 0
    while idle < _HORIZON_DAYS:
        idle += 1
        if cron.matches_date(day):
            for tick in _day_ticks(cron, day, tz):
                if tick > last:
                    last, idle = tick, 0
                    yield tick
        day += timedelta(days=1)


def cron_next(cron: Cron, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first tick strictly after `after` (UTC), or None if the expression never matches."""
    return next(cron_ticks(cron, tz, after), None)


def interval_next(start: datetime, interval: timedelta, after: datetime) -> datetime:
    """The first tick `start + k * interval` (k >= 0) strictly after `after`."""
    if after < start:
        return start
    k = (after - start) // interval + 1
    return start + k * interval


@dataclass(frozen=True)
class Timing:
    """When a schedule ticks: `cron` in `time_zone`, or every `interval` from `start`."""

    cron: str = ""
    interval: timedelta | None = None
    start: datetime | None = None
    time_zone: str = "UTC"

    def check(self) -> None:
        """Raise TimingError if the cron expression, interval or time zone is unusable."""
        self._next(datetime(2000, 1, 1, tzinfo=UTC))
        zone(self.time_zone)

    def next_after(self, after: datetime) -> datetime | None:
        """The first nominal time strictly after `after`."""
        return self._next(after)

    def _next(self, after: datetime) -> datetime | None:
        if self.interval is not None:
            if self.interval < timedelta(seconds=1):
                raise TimingError("interval must be at least 1 second")
            return interval_next(self.start or after, self.interval, after)
        return cron_next(parse_cron(self.cron or DEFAULT_CRON), zone(self.time_zone), after)

    def ticks(self, after: datetime, until: datetime, limit: int) -> Iterator[datetime]:
        """Nominal times in `(after, until]`, oldest first, at most `limit`."""
        for count, tick in enumerate(self._stream(after)):
            if tick > until or count >= limit:
                return
            yield tick

    def _stream(self, after: datetime) -> Iterator[datetime]:
        if self.interval is None:
            yield from cron_ticks(
                parse_cron(self.cron or DEFAULT_CRON), zone(self.time_zone), after
            )
            return
        tick = self._next(after)
        while tick is not None:
            yield tick
            tick = self._next(tick)


def jitter_delay(schedule_id: str, nominal: datetime, jitter: timedelta) -> timedelta:
    """The delay of the run of tick `nominal`: in `[0, jitter)`, the same on every replica (it is
    derived from the schedule and the tick, not drawn at random)."""
    if jitter <= timedelta(0):
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule_id}|{nominal.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(microseconds=int(jitter / timedelta(microseconds=1) * fraction))


@dataclass(frozen=True)
class DuePlan:
    """What to do about the ticks since the last recorded one."""

    #: The tick to fire now (the latest due one, if it is within the catch-up window).
    fire: datetime | None
    #: Earlier due ticks (and the latest, if too late), recorded as missed.
    missed: tuple[datetime, ...]
    #: Further missed ticks not listed (an outage with frequent ticks): counted, no row each.
    uncounted: int = 0

    @property
    def latest(self) -> datetime | None:
        """The newest tick this plan settles (fired or missed)."""
        return self.fire or (self.missed[-1] if self.missed else None)


#: A late tick always fires within this much of its due time, whatever the catch-up window
#: (a timer wakes a little late; that is not a misfire).
ON_TIME_GRACE = timedelta(seconds=10)


def _latest_tick(timing: Timing, last: datetime, now: datetime) -> tuple[datetime, int]:
    """The last tick at or before `now`, from a known tick `last`, and how many lie between."""
    if timing.interval is not None:
        between = (now - last) // timing.interval
        return last + between * timing.interval, max(0, between - 1)
    skipped, tick = -1, last
    for later in timing.ticks(last, now, 10**7):
        skipped, tick = skipped + 1, later
    return tick, max(0, skipped)


def plan_due(
    timing: Timing,
    *,
    after: datetime,
    now: datetime,
    window: timedelta,
    schedule_id: str = "",
    jitter: timedelta = timedelta(0),
    limit: int = 1000,
) -> DuePlan:
    """Settle the ticks in `(after, now]` whose run time (nominal + jitter) has come.

    The latest fires if it is at most `max(window, ON_TIME_GRACE)` past its run time; every
    earlier one (and the latest, when later than that) is missed. At most `limit` ticks get rows.
    """
    ticks = list(timing.ticks(after, now, limit))
    uncounted = 0
    if len(ticks) == limit:
        latest, uncounted = _latest_tick(timing, ticks[-1], now)
        if latest != ticks[-1]:
            ticks.append(latest)
    while ticks and ticks[-1] + jitter_delay(schedule_id, ticks[-1], jitter) > now:
        ticks.pop()
    if not ticks:
        return DuePlan(None, ())
    latest = ticks[-1]
    late = now - (latest + jitter_delay(schedule_id, latest, jitter))
    if late <= max(window, ON_TIME_GRACE):
        return DuePlan(latest, tuple(ticks[:-1]), uncounted)
    return DuePlan(None, tuple(ticks), uncounted)


def next_run_time(
    timing: Timing, after: datetime, schedule_id: str, jitter: timedelta
) -> datetime | None:
    """When the first tick after `after` is due to run (its nominal time plus jitter)."""
    tick = timing.next_after(after)
    if tick is None:
        return None
    return tick + jitter_delay(schedule_id, tick, jitter)
