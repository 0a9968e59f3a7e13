"""Department schedules: situations at frozen instants (no real clock), validation, the holidays file."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from harness import ROOT
from pydantic import ValidationError

from b2bua.config import ConfigError
from b2bua.routing.schedule import (
    AFTER_HOURS,
    HOLIDAY,
    LUNCH,
    OPEN,
    SEOUL,
    Holidays,
    Override,
    Schedule,
    WeeklyHours,
    korean_calendar,
    load_holidays,
    next_change,
    situation,
)

KST = timezone(timedelta(hours=9))
WEEKDAY_HOURS = ["09:00-18:00"]


def kst(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=SEOUL)


def civil(**kw) -> Schedule:
    """A typical city-hall department: weekdays 09-18, lunch 12-13, closed on public holidays."""
    data = {"name": "civil-affairs",
            "hours": {d: WEEKDAY_HOURS for d in ("mon", "tue", "wed", "thu", "fri")}}
    data.update(kw)
    return Schedule.model_validate(data)


#: the 42 days of 2026-2027 the project shipped by hand before the calendar came from the package
REFERENCE = ROOT / "tests" / "data" / "holidays-2026-2027.yaml"


@pytest.fixture(scope="module")
def holidays() -> Holidays:
    """What a department's schedule sees: the Korean calendar, with the shipped local file."""
    local = load_holidays(ROOT / "config" / "holidays.yaml")
    return Holidays(dict(local.items()), local.source, korean_calendar())


# -- situations ----------------------------------------------------------------------------

def test_weekday_morning_is_open(holidays: Holidays) -> None:
    assert kst(2026, 3, 4).weekday() == 2  # a Wednesday
    assert situation(civil(), holidays, kst(2026, 3, 4, 10, 0)) == OPEN
    assert situation(civil(), holidays, kst(2026, 3, 4, 9, 0)) == OPEN  # ranges include their start


def test_lunch(holidays: Holidays) -> None:
    assert situation(civil(), holidays, kst(2026, 3, 4, 12, 30)) == LUNCH
    assert situation(civil(), holidays, kst(2026, 3, 4, 12, 0)) == LUNCH
    assert situation(civil(), holidays, kst(2026, 3, 4, 13, 0)) == OPEN
    assert situation(civil(lunch=None), holidays, kst(2026, 3, 4, 12, 30)) == OPEN


def test_evening_is_after_hours(holidays: Holidays) -> None:
    assert situation(civil(), holidays, kst(2026, 3, 4, 19, 0)) == AFTER_HOURS
    assert situation(civil(), holidays, kst(2026, 3, 4, 18, 0)) == AFTER_HOURS  # ranges exclude their end
    assert situation(civil(), holidays, kst(2026, 3, 4, 17, 59, 59)) == OPEN
    assert situation(civil(), holidays, kst(2026, 3, 4, 8, 59)) == AFTER_HOURS


def test_saturday_is_after_hours_even_at_lunch(holidays: Holidays) -> None:
    assert kst(2026, 3, 7).weekday() == 5
    assert situation(civil(), holidays, kst(2026, 3, 7, 10, 0)) == AFTER_HOURS
    assert situation(civil(), holidays, kst(2026, 3, 7, 12, 30)) == AFTER_HOURS


def test_short_saturday_has_no_lunch_after_closing(holidays: Holidays) -> None:
    s = civil(hours={"mon": WEEKDAY_HOURS, "sat": ["09:00-11:00"]})
    assert situation(s, holidays, kst(2026, 3, 7, 10, 0)) == OPEN
    assert situation(s, holidays, kst(2026, 3, 7, 12, 30)) == AFTER_HOURS


def test_public_holiday(holidays: Holidays) -> None:
    when = kst(2026, 9, 25, 10, 0)  # 추석, a Friday
    assert when.weekday() == 4
    assert situation(civil(), holidays, when) == HOLIDAY
    assert situation(civil(), holidays, kst(2026, 9, 25, 12, 30)) == HOLIDAY  # holiday beats lunch
    assert situation(civil(), holidays, kst(2026, 3, 2, 10, 0)) == HOLIDAY  # 삼일절 대체공휴일
    # a department that works on holidays (e.g. a 24-hour complaints desk) just uses its hours
    assert situation(civil(holidays=False), holidays, when) == OPEN
    assert situation(civil(), None, when) == OPEN


def test_override_moved(holidays: Holidays) -> None:
    s = civil(overrides=[{"from_date": "2026-03-09", "to_date": "2026-03-13", "situation": "moved",
                          "note": "민원실 2층 임시 이전"}])
    assert situation(s, holidays, kst(2026, 3, 9, 10, 0)) == "moved"
    assert situation(s, holidays, kst(2026, 3, 13, 23, 59)) == "moved"  # to_date is included
    assert situation(s, holidays, kst(2026, 3, 11, 12, 30)) == "moved"  # override beats lunch
    assert situation(s, holidays, kst(2026, 3, 14, 10, 0)) == AFTER_HOURS  # the Saturday after
    assert situation(s, holidays, kst(2026, 3, 16, 10, 0)) == OPEN
    assert situation(s, holidays, kst(2026, 3, 6, 10, 0)) == OPEN


def test_override_beats_holiday(holidays: Holidays) -> None:
    s = civil(overrides=[{"from_date": "2026-09-24", "to_date": "2026-09-26", "situation": "closed"}])
    assert situation(s, holidays, kst(2026, 9, 25, 10, 0)) == "closed"


def test_override_with_its_own_hours(holidays: Holidays) -> None:
    s = civil(overrides=[{"from_date": "2026-04-01", "to_date": "2026-04-30", "situation": "construction",
                          "hours": {"mon": ["10:00-15:00"], "wed": ["10:00-15:00"]}}])
    assert situation(s, holidays, kst(2026, 4, 6, 11, 0)) == OPEN  # Monday, within
    assert situation(s, holidays, kst(2026, 4, 6, 9, 30)) == "construction"  # Monday, before
    assert situation(s, holidays, kst(2026, 4, 6, 16, 0)) == "construction"  # Monday, after
    assert situation(s, holidays, kst(2026, 4, 7, 11, 0)) == "construction"  # Tuesday: no hours
    assert situation(s, holidays, kst(2026, 5, 4, 11, 0)) == OPEN  # after the override


def test_first_matching_override_wins(holidays: Holidays) -> None:
    s = civil(overrides=[
        {"from_date": "2026-04-10", "to_date": "2026-04-10", "situation": "closed"},
        {"from_date": "2026-04-01", "to_date": "2026-04-30", "situation": "construction"},
    ])
    assert situation(s, holidays, kst(2026, 4, 10, 11, 0)) == "closed"
    assert situation(s, holidays, kst(2026, 4, 9, 11, 0)) == "construction"


def test_utc_input_is_converted_to_seoul(holidays: Holidays) -> None:
    when = datetime(2026, 3, 3, 1, 30, tzinfo=UTC)  # 10:30 KST, a Tuesday
    assert situation(civil(), holidays, when) == OPEN
    # 2026-03-01T16:00Z is 01:00 KST on Monday 2026-03-02 (삼일절 대체공휴일): the day is Seoul's
    assert situation(civil(), holidays, datetime(2026, 3, 2, 1, 0, tzinfo=UTC)) == HOLIDAY
    assert situation(civil(), holidays, datetime(2026, 3, 1, 23, 30, tzinfo=UTC)) == HOLIDAY
    # 2026-03-03T09:30Z is 18:30 KST
    assert situation(civil(), holidays, datetime(2026, 3, 3, 9, 30, tzinfo=UTC)) == AFTER_HOURS
    assert situation(civil(), holidays, datetime(2026, 3, 3, 10, 30, tzinfo=KST)) == OPEN


def test_naive_datetime_is_refused(holidays: Holidays) -> None:
    with pytest.raises(ValueError, match="naive"):
        situation(civil(), holidays, datetime(2026, 3, 3, 10, 30))
    with pytest.raises(ValueError, match="naive"):
        next_change(civil(), holidays, datetime(2026, 3, 3, 10, 30))


# -- next_change ---------------------------------------------------------------------------

def test_next_change_through_a_day(holidays: Holidays) -> None:
    s = civil()
    assert next_change(s, holidays, kst(2026, 3, 4, 10, 17, 42)) == kst(2026, 3, 4, 12, 0)
    assert next_change(s, holidays, kst(2026, 3, 4, 12, 0)) == kst(2026, 3, 4, 13, 0)
    assert next_change(s, holidays, kst(2026, 3, 4, 12, 59, 59)) == kst(2026, 3, 4, 13, 0)
    assert next_change(s, holidays, kst(2026, 3, 4, 13, 0)) == kst(2026, 3, 4, 18, 0)
    assert next_change(s, holidays, kst(2026, 3, 4, 19, 0)) == kst(2026, 3, 5, 9, 0)
    assert next_change(s, holidays, kst(2026, 3, 4, 7, 0)) == kst(2026, 3, 4, 9, 0)


def test_next_change_over_weekend_and_holidays(holidays: Holidays) -> None:
    s = civil()
    # Friday evening -> Monday morning
    assert next_change(s, holidays, kst(2026, 3, 6, 19, 0)) == kst(2026, 3, 9, 9, 0)
    # Friday 2026-02-27 evening: after hours until Sunday 2026-03-01 (삼일절, a holiday even on a Sunday),
    # holiday through Monday (대체공휴일) until midnight; Tuesday 00:00 to 09:00 is after hours
    assert next_change(s, holidays, kst(2026, 2, 27, 19, 0)) == kst(2026, 3, 1, 0, 0)
    assert situation(s, holidays, kst(2026, 3, 1, 10, 0)) == HOLIDAY
    assert next_change(s, holidays, kst(2026, 3, 1, 0, 0)) == kst(2026, 3, 3, 0, 0)
    assert next_change(s, holidays, kst(2026, 3, 2, 10, 0)) == kst(2026, 3, 3, 0, 0)
    assert next_change(s, holidays, kst(2026, 3, 3, 0, 0)) == kst(2026, 3, 3, 9, 0)
    # 추석 Thursday..Saturday: holiday until Saturday's end, then after hours (Sunday), then Monday 09:00
    assert next_change(s, holidays, kst(2026, 9, 24, 10, 0)) == kst(2026, 9, 27, 0, 0)
    assert next_change(s, holidays, kst(2026, 9, 27, 0, 0)) == kst(2026, 9, 28, 9, 0)


def test_next_change_accepts_utc_and_answers_in_seoul_time(holidays: Holidays) -> None:
    got = next_change(civil(), holidays, datetime(2026, 3, 4, 1, 30, tzinfo=UTC))  # 10:30 KST
    assert got == kst(2026, 3, 4, 12, 0)
    assert got is not None and got.utcoffset() == timedelta(hours=9)


def test_next_change_agrees_with_a_minute_by_minute_walk(holidays: Holidays) -> None:
    s = civil(hours={"mon": ["08:30-12:00", "13:00-17:30"], "tue": WEEKDAY_HOURS, "sat": ["09:00-11:00"]},
              overrides=[{"from_date": "2026-03-11", "to_date": "2026-03-12", "situation": "moved",
                          "hours": {"thu": ["14:00-16:00"]}}])
    start = kst(2026, 2, 27, 0, 0)
    when = start
    while when < start + timedelta(days=16):
        expected = None
        probe = when.replace(second=0) + timedelta(minutes=1)
        current = situation(s, holidays, when)
        while probe <= when + timedelta(days=8):
            if situation(s, holidays, probe) != current:
                expected = probe
                break
            probe += timedelta(minutes=1)
        assert next_change(s, holidays, when) == expected, when
        when = expected if expected is not None else when + timedelta(days=1)


def test_next_change_is_none_when_nothing_changes(holidays: Holidays) -> None:
    always = Schedule(name="hotline", hours=WeeklyHours(**{d: ["00:00-24:00"] for d in
                                                          ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}),
                      lunch=None, holidays=False)
    assert situation(always, holidays, kst(2026, 3, 4, 3, 0)) == OPEN
    assert next_change(always, holidays, kst(2026, 3, 4, 3, 0)) is None
    closed = civil(overrides=[{"from_date": "2026-03-01", "to_date": "2026-06-30", "situation": "closed"}])
    assert next_change(closed, holidays, kst(2026, 3, 4, 10, 0)) is None


# -- validation ----------------------------------------------------------------------------

def _errors(**hours) -> list[dict]:
    with pytest.raises(ValidationError) as err:
        WeeklyHours.model_validate(hours)
    return err.value.errors()


def test_hour_out_of_range_is_refused() -> None:
    (e,) = _errors(mon=["09:00-12:00", "25:00-26:00"])
    assert e["loc"] == ("mon", 1)
    assert "'25:00-26:00': 25:00 is not a time of day" in e["msg"]


def test_bad_syntax_is_refused() -> None:
    (e,) = _errors(tue=["9-18"])
    assert e["loc"] == ("tue", 0)
    assert "'9-18' is not a time range: expected 'HH:MM-HH:MM'" in e["msg"]
    (e,) = _errors(tue=["09:60-10:00"])
    assert "09:60 is not a time of day" in e["msg"]


def test_start_must_be_before_end() -> None:
    (e,) = _errors(wed=["18:00-09:00"])
    assert "'18:00-09:00': the start 18:00 is not before the end 09:00" in e["msg"]
    (e,) = _errors(wed=["10:00-10:00"])
    assert "the start 10:00 is not before the end 10:00" in e["msg"]


def test_overlapping_ranges_are_refused() -> None:
    (e,) = _errors(thu=["13:00-18:00", "09:00-13:30"])
    assert e["loc"] == ("thu",)
    assert "'09:00-13:30' overlaps '13:00-18:00'" in e["msg"]
    # touching ranges are fine; 24:00 ends a day
    WeeklyHours(thu=["09:00-12:00", "12:00-18:00", "22:00-24:00"])


def test_schedule_validation() -> None:
    with pytest.raises(ValidationError) as err:
        Schedule.model_validate({"name": "x", "hours": {}, "lunch": "13:00-12:00"})
    assert "the start 13:00 is not before the end 12:00" in str(err.value)
    with pytest.raises(ValidationError) as err:
        Schedule.model_validate({"name": "x", "hours": {"monday": ["09:00-18:00"]}})
    assert err.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError) as err:
        Override.model_validate({"from_date": "2026-03-05", "to_date": "2026-03-01", "situation": "moved"})
    assert "to_date 2026-03-01 is before from_date 2026-03-05" in str(err.value)
    with pytest.raises(ValidationError) as err:
        Override.model_validate({"from_date": "2026-03-05", "to_date": "2026-03-06", "situation": "open"})
    assert "give the override 'hours'" in str(err.value)
    with pytest.raises(ValidationError):
        civil().name = "other"  # frozen


# -- the holidays file ---------------------------------------------------------------------

def test_holidays_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "holidays.yaml"
    path.write_text("# a comment\n2026-01-01: 신정\n'2026-02-17': 설날\n", encoding="utf-8")
    h = load_holidays(path)
    assert h.is_holiday(date(2026, 1, 1)) and h.name(date(2026, 2, 17)) == "설날"
    assert not h.is_holiday(date(2026, 1, 2)) and h.name(date(2026, 1, 2)) is None
    assert h.is_holiday(datetime(2025, 12, 31, 15, 30, tzinfo=UTC))  # 00:30 KST on Jan 1
    assert len(h) == 2 and list(h) == [date(2026, 1, 1), date(2026, 2, 17)]
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert len(load_holidays(empty)) == 0


def test_bad_holiday_entries_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "holidays.yaml"
    path.write_text(
        "2026-01-01: 신정\n"
        "2026-02-30: 없는 날\n"
        "20260301: 삼일절\n"
        "2026-05-05:\n"
        "2026-06-06: 6\n"
        "2026-01-01: 또 신정\n",
        encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_holidays(path)
    problems = err.value.problems
    assert problems[0].startswith(f"{path}:2: 2026-02-30: not a valid date")
    assert problems[1] == f"{path}:3: 20260301: not a date: expected YYYY-MM-DD, e.g. 2026-01-01"
    assert problems[2] == f"{path}:4: 2026-05-05: missing the holiday's name"
    assert problems[3] == f"{path}:5: 2026-06-06: the name must be a string (got 6)"
    assert problems[4] == f"{path}:6: 2026-01-01: listed twice (first at line 1)"
    assert len(problems) == 5


def test_holidays_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "holidays.yaml"
    path.write_text("- 2026-01-01\n")
    with pytest.raises(ConfigError) as err:
        load_holidays(path)
    assert err.value.problems == [f"{path}:1: expected a mapping of 'YYYY-MM-DD: name' lines at the top level"]
    with pytest.raises(ConfigError) as err:
        load_holidays(tmp_path / "missing.yaml")
    assert err.value.problems == [f"{tmp_path / 'missing.yaml'}:1: file not found"]


def test_the_calendar_agrees_with_every_day_once_listed_by_hand_and_knows_more(holidays: Holidays) -> None:
    reference = load_holidays(REFERENCE)
    assert len(reference) == 42
    for day, name in reference.items():
        assert holidays.is_holiday(day), (day, name)
    assert holidays.name(date(2026, 5, 1)) == "노동절" and holidays.is_holiday(date(2027, 7, 19))  # 제헌절 대체
    assert holidays.is_holiday(date(2031, 1, 1)) and not holidays.is_holiday(date(2031, 1, 2))  # later years too
    assert not holidays.is_holiday(date(2026, 3, 4))


def test_a_local_day_is_a_holiday_with_its_name_and_coverage_is_known(tmp_path: Path) -> None:
    path = tmp_path / "holidays.yaml"
    path.write_text("2026-10-02: 임시공휴일\n2026-01-01: 새해 첫날\n", encoding="utf-8")
    local = load_holidays(path)
    with_calendar = Holidays(dict(local.items()), local.source, korean_calendar())
    assert with_calendar.name(date(2026, 10, 2)) == "임시공휴일" and with_calendar.name(date(2026, 1, 1)) == "새해 첫날"
    assert with_calendar.uncovered(date(2026, 12, 3)) == []
    alone = Holidays(dict(local.items()), local.source)  # no calendar: 2027 is not known
    assert alone.uncovered(date(2026, 12, 3)) == [2027]
    assert Holidays({**dict(local.items()), date(2027, 1, 1): "신정"}).uncovered(date(2026, 12, 3)) == []
    assert not alone.is_holiday(date(2026, 3, 1))


def test_shipped_holidays(holidays: Holidays) -> None:
    assert holidays.name(date(2026, 1, 1)) is not None
    assert holidays.is_holiday(date(2027, 12, 27))
    for y in (2026, 2027):
        assert holidays.is_holiday(date(y, 1, 1))
        for md in ((3, 1), (5, 5), (6, 6), (8, 15), (10, 3), (10, 9), (12, 25)):
            assert holidays.is_holiday(date(y, *md)), (y, md)
    for d in ("2026-02-16", "2026-02-17", "2026-02-18", "2026-09-24", "2026-09-25", "2026-09-26",
              "2027-02-06", "2027-02-07", "2027-02-08", "2027-09-14", "2027-09-15", "2027-09-16",
              "2026-05-24", "2027-05-13", "2026-06-03"):
        assert holidays.is_holiday(date.fromisoformat(d)), d


def test_every_substitute_holiday_is_a_weekday(holidays: Holidays) -> None:
    substitutes = {d: n for d, n in load_holidays(REFERENCE).items() if "대체공휴일" in n}
    assert sorted(d.isoformat() for d in substitutes) == [
        "2026-03-02", "2026-05-25", "2026-08-17", "2026-10-05",
        "2027-02-09", "2027-08-16", "2027-10-04", "2027-10-11", "2027-12-27",
    ]
    for d, n in substitutes.items():
        assert d.weekday() < 5, f"{d} ({n}) is a {d.strftime('%A')}"
        # the day it stands in for is a weekend day or another holiday, at most three days before
        before = [d - timedelta(days=i) for i in (1, 2, 3)]
        assert any(b.weekday() >= 5 and holidays.is_holiday(b) for b in before), (d, n)


def test_without_tzdata_seoul_is_fixed_utc_plus_9(monkeypatch: pytest.MonkeyPatch) -> None:
    import zoneinfo

    from b2bua.routing import schedule

    def missing(key: str) -> None:
        raise zoneinfo.ZoneInfoNotFoundError(key)

    monkeypatch.setattr(zoneinfo, "ZoneInfo", missing)
    tz = schedule._seoul()
    assert tz.utcoffset(None) == timedelta(hours=9) and tz.tzname(None) == "KST"
    assert datetime(2026, 7, 1, 3, 0, tzinfo=UTC).astimezone(tz).hour == 12
