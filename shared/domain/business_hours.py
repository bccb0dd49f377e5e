"""Business hours: weekly opening ranges, time zone, holidays, and business-time arithmetic.

Shared by every context that reasons about working time: departments (which
own the schedules), the support center (expected response of a ticket) and the
notifier (response-time warnings), so they all count the same way without
importing one another.

A schedule is weekly opening ranges in local wall time of an IANA time zone,
plus holidays: whole local dates on which it stays closed. A range belongs to
the date it starts on; ``"24:00"`` may end a range (midnight of the next day).

Business time is *real elapsed time* inside the opening ranges. Each range is
turned into an interval of instants in its own local date, so daylight saving
time comes out right without special cases:

* a change outside the hours changes nothing: 09:00-18:00 is 9 hours on the
  day the clocks change at 02:00;
* a change inside the hours counts what really elapses: Europe/Berlin
  00:00-06:00 is 5 hours on 2026-03-29 and 7 hours on 2026-10-25.

Wall times that do not exist or exist twice on such days:

* a time skipped by the clocks (02:30 in a spring-forward gap) is taken as the
  moment of the change, the first moment the clock shows a later time; a range
  entirely inside the gap is empty;
* a time shown twice (02:30 after falling back) opens a range at its first
  occurrence and closes one at its last, so a range covers every moment the
  clock shows a time inside it.

All results are aware datetimes in UTC.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from shared.domain.aggregate import DomainError

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TimeRange = tuple[str, str]
"""``("HH:MM", "HH:MM")``, start inclusive, end exclusive; the end may be ``"24:00"``."""


class WeeklyHours(BaseModel):
    """Opening hours per weekday, in the schedule's time zone, ranges sorted by start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mon: list[TimeRange] = []
    tue: list[TimeRange] = []
    wed: list[TimeRange] = []
    thu: list[TimeRange] = []
    fri: list[TimeRange] = []
    sat: list[TimeRange] = []
    sun: list[TimeRange] = []

    def on(self, day: Day) -> list[TimeRange]:
        ranges: list[TimeRange] = getattr(self, day)
        return ranges


MAX_HOLIDAYS = 1000
MAX_RESPONSE_HOURS = 10_000  # over a year of round-the-clock hours; more is a mistake
MINUTES_PER_DAY = 24 * 60

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")

RawWeekly = Mapping[str, Sequence[Sequence[str]]]
"""Weekly hours as the API gives them: ``{"mon": [["09:00", "18:00"]], ...}``."""


class ScheduleHours(Protocol):
    """What business-time arithmetic needs: a schedule aggregate, its events, ``BusinessHours``."""

    @property
    def timezone(self) -> str: ...

    @property
    def weekly(self) -> WeeklyHours: ...

    @property
    def holidays(self) -> Sequence[date]: ...


@dataclass(frozen=True)
class BusinessHours:
    """A schedule as plain data (what a read model row or a published event holds)."""

    timezone: str
    weekly: WeeklyHours
    holidays: tuple[date, ...] = ()


ROUND_THE_CLOCK = BusinessHours(
    "UTC", WeeklyHours.model_validate({day: [("00:00", "24:00")] for day in DAYS})
)
"""Always open: what a department without a schedule works by."""


# ---------------------------------------------------------------- validation


def check_timezone(name: str, field: str = "timezone") -> ZoneInfo:
    """The zone of an IANA name, or ``DomainError`` naming ``field``."""
    if not _ZONE_NAME.match(name) or name in ("localtime", "posixrules", "Factory"):
        raise DomainError(field, f"{name!r} is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise DomainError(field, f"unknown time zone {name!r}") from None


def _minutes(text: object, *, end: bool) -> int | None:
    """Minutes since local midnight of ``"HH:MM"`` (``"24:00"`` only as an end), or None."""
    if not isinstance(text, str):
        return None
    if end and text == "24:00":
        return MINUTES_PER_DAY
    match = _HHMM.match(text)
    return int(match[1]) * 60 + int(match[2]) if match else None


def check_weekly(weekly: RawWeekly, field: str = "weekly") -> WeeklyHours:
    """Validated weekly hours, each day's ranges sorted by start."""
    if not isinstance(weekly, Mapping):
        raise DomainError(field, 'an object like {"mon": [["09:00", "18:00"]], ...}')
    days: dict[str, list[TimeRange]] = {}
    for day, ranges in weekly.items():
        if day not in DAYS:
            raise DomainError(f"{field}.{day}", "not a day; use mon, tue, wed, thu, fri, sat, sun")
        if isinstance(ranges, str) or not isinstance(ranges, Sequence):
            raise DomainError(f"{field}.{day}", 'a list of ["HH:MM", "HH:MM"] ranges')
        parsed: list[tuple[int, int, int]] = []  # start, end, index given
        for i, pair in enumerate(ranges):
            where = f"{field}.{day}.{i}"
            if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise DomainError(where, 'a ["HH:MM", "HH:MM"] pair')
            start, end = _minutes(pair[0], end=False), _minutes(pair[1], end=True)
            if start is None or end is None:
                raise DomainError(where, "times are HH:MM from 00:00 to 23:59 (24:00 as an end)")
            if start >= end:
                raise DomainError(where, "the start must be before the end")
            parsed.append((start, end, i))
        parsed.sort()
        for (_, previous_end, _), (start, _, i) in itertools.pairwise(parsed):
            if start < previous_end:
                raise DomainError(f"{field}.{day}.{i}", "overlaps another range of the day")
        days[day] = [(str(ranges[i][0]), str(ranges[i][1])) for _, _, i in parsed]
    if not any(days.values()):
        raise DomainError(field, "at least one day needs opening hours")
    return WeeklyHours.model_validate(days)


def check_holidays(holidays: Sequence[str | date], field: str = "holidays") -> list[date]:
    """Validated holidays: ISO dates, without repeats, sorted."""
    if isinstance(holidays, str) or not isinstance(holidays, Sequence):
        raise DomainError(field, 'a list of ISO dates like "2026-12-31"')
    if len(holidays) > MAX_HOLIDAYS:
        raise DomainError(field, f"at most {MAX_HOLIDAYS} dates")
    found: set[date] = set()
    for i, value in enumerate(holidays):
        if isinstance(value, datetime):
            raise DomainError(f"{field}.{i}", "a date, not a date and time")
        if isinstance(value, date):
            found.add(value)
            continue
        try:
            if not isinstance(value, str) or not _ISO_DATE.match(value):
                raise ValueError(value)
            found.add(date.fromisoformat(value))
        except ValueError:
            message = f"{value!r} is not an ISO date (YYYY-MM-DD)"
            raise DomainError(f"{field}.{i}", message) from None
    return sorted(found)


# ---------------------------------------------------------------- business time

Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class _Compiled:
    zone: ZoneInfo
    days: tuple[tuple[tuple[int, int], ...], ...]  # by weekday (0 = mon): minute ranges
    holidays: frozenset[date]


def _compile(schedule: ScheduleHours) -> _Compiled:
    zone = check_timezone(schedule.timezone)
    days = tuple(
        tuple(
            (_stored_minutes(start, end=False), _stored_minutes(end, end=True))
            for start, end in schedule.weekly.on(day)
        )
        for day in DAYS
    )
    if not any(days):
        raise DomainError("weekly", "the schedule has no opening hours")
    return _Compiled(zone=zone, days=days, holidays=frozenset(schedule.holidays))


def _stored_minutes(text: str, *, end: bool) -> int:
    minutes = _minutes(text, end=end)
    if minutes is None:  # only if a stored schedule bypassed ``check_weekly``
        raise DomainError("weekly", f"{text!r} is not a HH:MM time")
    return minutes


def _instant(zone: ZoneInfo, day: date, minute: int, *, end: bool) -> datetime:
    """The UTC instant of a local wall time (see the module docstring for DST)."""
    if minute == MINUTES_PER_DAY:
        day, minute = day + timedelta(days=1), 0
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first <= second:  # an ordinary time (equal), or one the clock shows twice
        return second if end else first
    # Skipped by the clocks: fold=0 applies the offset before the change and
    # lands after it, fold=1 the offset after and lands before it.
    return _change_between(zone, second, first)


def _change_between(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant in (before, after] from which ``zone``'s UTC offset is that of ``after``."""
    target = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())  # whole minutes: exact
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _day_intervals(schedule: _Compiled, day: date) -> list[Interval]:
    if day in schedule.holidays:
        return []
    intervals: list[Interval] = []
    for start, end in schedule.days[day.weekday()]:
        opens = _instant(schedule.zone, day, start, end=False)
        closes = _instant(schedule.zone, day, end, end=True)
        if opens < closes:
            intervals.append((opens, closes))
    return intervals


def _open_intervals(schedule: _Compiled, since: datetime) -> Iterator[Interval]:
    """Open intervals from ``since`` on, in order, not overlapping (they may touch); endless."""
    # From the day before: a range ending at 24:00 may reach into ``since``'s day.
    day = since.astimezone(schedule.zone).date() - timedelta(days=1)
    # Every week has opening hours, so only holidays, and a range that a DST gap
    # swallows once, can close more than six days in a row.
    closed_days, most_closed = 0, 14 + len(schedule.holidays)
    last_close: datetime | None = None
    while True:
        intervals = _day_intervals(schedule, day)
        closed_days = 0 if intervals else closed_days + 1
        if closed_days > most_closed:
            raise DomainError("weekly", "the schedule has no opening hours")
        for opens, closes in intervals:
            if last_close is not None and opens < last_close:
                # Ranges that overlap in real time on a DST day: count the overlap once.
                opens = last_close
                if opens >= closes:
                    continue
            last_close = closes
            if closes > since:
                yield max(opens, since), closes
        day += timedelta(days=1)


def _in_utc(moment: datetime, field: str) -> datetime:
    """An aware argument in UTC.

    In UTC because an aware datetime at a repeated or skipped local time never
    compares equal to one in another zone (PEP 495), even at the same instant.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DomainError(field, "a date and time with a time zone is required")
    return moment.astimezone(UTC)


def expected_response_at(
    schedule: ScheduleHours, requested_at: datetime, response_hours: float
) -> datetime:
    """When ``response_hours`` of business time have elapsed since ``requested_at``.

    Counting starts at ``requested_at`` if the schedule is open then, else at its
    next opening. A due moment that falls exactly at a closing is that closing.
    """
    requested_at = _in_utc(requested_at, "requested_at")
    if not (math.isfinite(response_hours) and 0 <= response_hours <= MAX_RESPONSE_HOURS):
        raise DomainError("response_hours", f"a number of hours from 0 to {MAX_RESPONSE_HOURS}")
    remaining = timedelta(hours=response_hours)
    for opens, closes in _open_intervals(_compile(schedule), requested_at):
        if closes - opens >= remaining:
            return opens + remaining
        remaining -= closes - opens
    raise AssertionError("unreachable: the intervals never end")  # pragma: no cover


def business_time_between(schedule: ScheduleHours, start: datetime, end: datetime) -> timedelta:
    """Business time elapsed from ``start`` to ``end`` (zero if ``end`` is not later)."""
    start, end = _in_utc(start, "start"), _in_utc(end, "end")
    total = timedelta()
    if end <= start:
        return total
    for opens, closes in _open_intervals(_compile(schedule), start):
        if opens >= end:
            break
        total += min(closes, end) - opens
    return total


def next_opening(schedule: ScheduleHours, at: datetime) -> datetime:
    """The first moment at or after ``at`` when the schedule is open (``at`` itself while open)."""
    opens, _ = next(_open_intervals(_compile(schedule), _in_utc(at, "at")))
    return opens


def is_open(schedule: ScheduleHours, at: datetime) -> bool:
    """Whether ``at`` is inside the opening hours (an opening counts, a closing does not)."""
    return next_opening(schedule, at) == _in_utc(at, "at")
