"""Department schedules in Seoul time: open, lunch, after hours, public holidays and overrides.

A :class:`Schedule` says when a department answers the phone. :func:`situation` tells which case an
instant falls in, in this order of precedence:

1. an :class:`Override` covering the day (the office moved, construction, closed): its ``situation``,
   or ``"open"`` when the override has its own ``hours`` and the instant is within them;
2. ``"holiday"``: a public holiday (from :class:`Holidays`) when the schedule observes them;
3. ``"lunch"``: within the lunch break on a day the office is open both before its end and after
   its start;
4. ``"open"`` within the weekly hours, else ``"after_hours"``.

Times are wall-clock times in Asia/Seoul (Korea has no daylight saving time). Every range is
half-open, ``"09:00-18:00"`` is open at 09:00:00 and closed at 18:00:00; ``24:00`` may end a range.
A range cannot pass midnight: write ``"22:00-24:00"`` on one day and ``"00:00-06:00"`` on the next.

:func:`next_change` gives the next instant the answer changes, for caching.

The public holidays come from a YAML file (``config/holidays.yaml``) of ``YYYY-MM-DD: name``
lines, loaded by :func:`load_holidays`; its problems are reported as ``file:line: what is wrong``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

from b2bua.yamlconf import ConfigError, Strict, load_yaml

__all__ = [
    "AFTER_HOURS", "HOLIDAY", "LUNCH", "OPEN", "SEOUL", "Holidays", "Override", "Schedule", "WeeklyHours",
    "load_holidays", "next_change", "situation",
]


def _seoul() -> tzinfo:
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - Python 3.9+ has zoneinfo
        return timezone(timedelta(hours=9), "KST")
    try:
        return ZoneInfo("Asia/Seoul")
    except (ZoneInfoNotFoundError, ValueError, OSError):  # no tzdata: Korea has had UTC+9 without DST since 1988
        return timezone(timedelta(hours=9), "KST")


#: Asia/Seoul, or a fixed UTC+9 when the machine has no time zone data.
SEOUL: tzinfo = _seoul()

OPEN = "open"
LUNCH = "lunch"
HOLIDAY = "holiday"
AFTER_HOURS = "after_hours"

#: How far :func:`next_change` looks ahead.
SEARCH_DAYS = 8

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = 86_400


# -- time ranges -------------------------------------------------------------------------

_RANGE = re.compile(r"^\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*$")


def _clock(hh: str, mm: str, *, end: bool) -> int | None:
    h, m = int(hh), int(mm)
    if end and h == 24 and m == 0:
        return _DAY
    if h > 23 or m > 59:
        return None
    return h * 3600 + m * 60


def _fmt(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@functools.lru_cache(maxsize=1024)
def parse_range(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` -> (start, end) in seconds since midnight; ValueError with a clear message."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time range: expected 'HH:MM-HH:MM', e.g. '09:00-18:00'")
    m = _RANGE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a time range: expected 'HH:MM-HH:MM', e.g. '09:00-18:00'")
    start = _clock(m[1], m[2], end=False)
    if start is None:
        raise ValueError(f"{text!r}: {m[1]}:{m[2]} is not a time of day (00:00 to 23:59)")
    end = _clock(m[3], m[4], end=True)
    if end is None:
        raise ValueError(f"{text!r}: {m[3]}:{m[4]} is not a time of day (00:00 to 23:59, or 24:00 to end a range)")
    if start >= end:
        raise ValueError(f"{text!r}: the start {_fmt(start)} is not before the end {_fmt(end)} "
                         "(a range cannot pass midnight: split it at 24:00)")
    return start, end


def _check_range(text: str) -> str:
    parse_range(text)
    return text


#: One open range, ``"HH:MM-HH:MM"``.
TimeRange = Annotated[str, AfterValidator(_check_range)]


@functools.lru_cache(maxsize=1024)
def _ranges(texts: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    return tuple(sorted(parse_range(t) for t in texts))


def _within(ranges: tuple[tuple[int, int], ...], t: float) -> bool:
    return any(start <= t < end for start, end in ranges)


# -- models ------------------------------------------------------------------------------

class WeeklyHours(Strict):
    """Open ranges for each weekday; a day left out (or ``[]``) is closed all day."""

    mon: list[TimeRange] = Field(default_factory=list)
    tue: list[TimeRange] = Field(default_factory=list)
    wed: list[TimeRange] = Field(default_factory=list)
    thu: list[TimeRange] = Field(default_factory=list)
    fri: list[TimeRange] = Field(default_factory=list)
    sat: list[TimeRange] = Field(default_factory=list)
    sun: list[TimeRange] = Field(default_factory=list)

    @field_validator(*WEEKDAYS)
    @classmethod
    def _no_overlap(cls, v: list[str]) -> list[str]:
        spans = sorted((parse_range(t), t) for t in v)
        for (prev, prev_text), (cur, cur_text) in pairwise(spans):
            if cur[0] < prev[1]:
                raise ValueError(f"{prev_text!r} overlaps {cur_text!r}")
        return v

    def ranges(self, weekday: int) -> tuple[tuple[int, int], ...]:
        """The open ranges of ``weekday`` (0 = Monday, like ``date.weekday()``), sorted, in seconds."""
        return _ranges(tuple(getattr(self, WEEKDAYS[weekday])))


class Override(Strict):
    """Days (``from_date`` to ``to_date``, both included) when the usual schedule does not apply."""

    from_date: date
    to_date: date
    #: what callers are told, e.g. ``moved``, ``construction``, ``closed``
    situation: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)
    note: str | None = None
    #: hours replacing the weekly hours on these days; outside them the situation applies
    hours: WeeklyHours | None = None

    @field_validator("situation")
    @classmethod
    def _not_open(cls, v: str) -> str:
        if v == OPEN:
            raise ValueError("situation 'open' is implied: give the override 'hours' to open on these days")
        return v

    @model_validator(mode="after")
    def _dates_in_order(self) -> Override:
        if self.to_date < self.from_date:
            raise ValueError(f"to_date {self.to_date} is before from_date {self.from_date}")
        return self

    def covers(self, day: date) -> bool:
        return self.from_date <= day <= self.to_date


class Schedule(Strict):
    """When one department answers the phone."""

    name: str = Field(min_length=1)
    hours: WeeklyHours
    #: the lunch break, ``None`` for none
    lunch: TimeRange | None = "12:00-13:00"
    #: closed on public holidays
    holidays: bool = True
    #: the first override covering a day wins: list a short one before a longer one it falls in
    overrides: list[Override] = Field(default_factory=list)

    def override_for(self, day: date) -> Override | None:
        for o in self.overrides:
            if o.covers(day):
                return o
        return None


# -- public holidays ---------------------------------------------------------------------

class Holidays:
    """Public holidays: date -> name. The operator's own days (``holidays.yaml``: temporary holidays, local
    additions) first, then a calendar that computes every year's days (the ``holidays`` package's Korean
    calendar, 관공서의 공휴일 with substitute days and the lunar dates), when one is given."""

    def __init__(self, days: Mapping[date, str] | None = None, source: str | None = None,
                 calendar: Any | None = None):
        self._days: dict[date, str] = dict(days or {})
        self.source = source
        #: a ``holidays.HolidayBase`` (expands the years it is asked about), or None
        self.calendar = calendar

    @staticmethod
    def _day(day: date) -> date:
        if isinstance(day, datetime):
            return day.astimezone(SEOUL).date() if day.utcoffset() is not None else day.date()
        return day

    def is_holiday(self, day: date) -> bool:
        """Is ``day`` a public holiday? An aware datetime is taken in Seoul time."""
        return self.name(day) is not None

    def name(self, day: date) -> str | None:
        d = self._day(day)
        if d in self._days:
            return self._days[d]
        if self.calendar is not None and self._covered(d.year):
            got = self.calendar.get(d)
            return str(got) if got is not None else None
        return None

    def _covered(self, year: int) -> bool:
        cal = self.calendar
        return cal is not None and getattr(cal, "start_year", year) <= year <= getattr(cal, "end_year", year)

    def uncovered(self, today: date, days: int = 365) -> list[int]:
        """The years of the next ``days`` that neither the calendar nor a listed day covers."""
        years = range(today.year, (today + timedelta(days=days)).year + 1)
        listed = {d.year for d in self._days}
        return [y for y in years if not self._covered(y) and y not in listed]

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.is_holiday(day)

    def __iter__(self) -> Iterator[date]:
        return iter(sorted(self._days))

    def __len__(self) -> int:
        return len(self._days)

    def items(self) -> list[tuple[date, str]]:
        return sorted(self._days.items())

    def __repr__(self) -> str:
        cal = f", calendar {type(self.calendar).__name__}" if self.calendar is not None else ""
        return f"Holidays({len(self._days)} days{', from ' + self.source if self.source else ''}{cal})"


def korean_calendar() -> Any:
    """The ``holidays`` package's Korean public holidays (관공서의 공휴일), names in Korean."""
    import holidays

    return holidays.country_holidays("KR", language="ko")


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def load_holidays(path: str | Path) -> Holidays:
    """Load a ``YYYY-MM-DD: name`` YAML file; every problem is a ``file:line:`` line of a ConfigError."""
    path = Path(path)
    twice: list[str] = []
    data, lines = load_yaml(path, twice)
    problems: list[str] = []
    if not twice and (data is None or data == {}):
        return Holidays({}, str(path))
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: expected a mapping of 'YYYY-MM-DD: name' lines at the top level"])
    days: dict[date, str] = {}
    for key, value in data.items():
        line = lines.get((key,), 1)
        text = str(key)
        if not isinstance(key, str) or not _DATE.match(key):
            problems.append(f"{path}:{line}: {text}: not a date: expected YYYY-MM-DD, e.g. 2026-01-01")
            continue
        try:
            day = date.fromisoformat(key)
        except ValueError as exc:
            problems.append(f"{path}:{line}: {text}: not a valid date ({exc})")
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(f"{path}:{line}: {text}: missing the holiday's name")
            continue
        if not isinstance(value, str):
            problems.append(f"{path}:{line}: {text}: the name must be a string (got {value!r})")
            continue
        days[day] = value.strip()
    problems.extend(twice)
    if problems:
        raise ConfigError(problems)
    return Holidays(days, str(path))


# -- the situation -----------------------------------------------------------------------

def _local(when: datetime) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"expected a datetime, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when.isoformat()}: give a time zone (e.g. tzinfo=SEOUL or UTC)")
    return when.astimezone(SEOUL)


def _situation_at(schedule: Schedule, holidays: Holidays | None, day: date, t: float) -> str:
    override = schedule.override_for(day)
    if override is not None:
        if override.hours is not None and _within(override.hours.ranges(day.weekday()), t):
            return OPEN
        return override.situation
    if schedule.holidays and holidays is not None and holidays.is_holiday(day):
        return HOLIDAY
    ranges = schedule.hours.ranges(day.weekday())
    if schedule.lunch is not None and ranges:
        lunch_start, lunch_end = parse_range(schedule.lunch)
        # a lunch break only on a day the office is open before its end and after its start
        if lunch_start <= t < lunch_end and ranges[0][0] < lunch_end and max(e for _, e in ranges) > lunch_start:
            return LUNCH
    return OPEN if _within(ranges, t) else AFTER_HOURS


def situation(schedule: Schedule, holidays: Holidays | None, when: datetime) -> str:
    """``"open"``, ``"lunch"``, ``"holiday"``, ``"after_hours"`` or an override's situation at ``when``.

    ``when`` must be timezone-aware (it is converted to Seoul time); a naive datetime raises ValueError.
    """
    local = _local(when)
    t = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return _situation_at(schedule, holidays, local.date(), t)


def _boundaries(schedule: Schedule) -> list[int]:
    """Every time of day (seconds) at which the situation can change, on any day."""
    out = {0}
    hours = [schedule.hours] + [o.hours for o in schedule.overrides if o.hours is not None]
    for h in hours:
        for wd in range(7):
            for start, end in h.ranges(wd):
                out.update((start, end))
    if schedule.lunch is not None:
        out.update(parse_range(schedule.lunch))
    out.discard(_DAY)  # the next day's 00:00
    return sorted(out)


def next_change(schedule: Schedule, holidays: Holidays | None, when: datetime) -> datetime | None:
    """The first instant after ``when`` whose situation differs from the one at ``when``, in Seoul time.

    Searched within :data:`SEARCH_DAYS` days; ``None`` if nothing changes in that window. Changes only
    happen on whole minutes (every boundary is an ``HH:MM``), so the answer is exact to the minute.
    """
    local = _local(when)
    current = situation(schedule, holidays, local)
    limit = local + timedelta(days=SEARCH_DAYS)
    times = _boundaries(schedule)
    day = local.date()
    while True:
        for t in times:
            candidate = datetime.combine(day, time(t // 3600, t % 3600 // 60), tzinfo=SEOUL)
            if candidate <= local:
                continue
            if candidate > limit:
                return None
            if _situation_at(schedule, holidays, day, t) != current:
                return candidate
        day += timedelta(days=1)
