"""Work schedules: validation, and business time across weekends, holidays and DST changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.departments.domain.errors import DomainError, NotFound
from services.departments.domain.events import ScheduleChanged, ScheduleCreated, WeeklyHours
from services.departments.domain.schedule import (
    RawWeekly,
    Schedule,
    SchedulePatch,
    business_time_between,
    expected_response_at,
    is_open,
    next_opening,
    stream_name,
)

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
WORKDAYS = ("mon", "tue", "wed", "thu", "fri")
NINE_TO_SIX: RawWeekly = {day: [["09:00", "18:00"]] for day in WORKDAYS}
LUNCH_BREAK: RawWeekly = {day: [["09:00", "13:00"], ["14:00", "18:00"]] for day in WORKDAYS}
SUNDAY_NIGHT: RawWeekly = {"sun": [["00:00", "06:00"]]}


def schedule(
    weekly: RawWeekly = NINE_TO_SIX,
    timezone: str = "Europe/Moscow",
    holidays: Sequence[str | date] = (),
) -> Schedule:
    return Schedule().applied(Schedule.create("sch-1", "Office", timezone, weekly, holidays))


def local(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ---------------------------------------------------------------- the concrete cases


def test_friday_afternoon_plus_four_hours_is_monday_noon() -> None:
    friday_17 = local(MOSCOW, 2026, 3, 27, 17, 0)  # a Friday
    due = expected_response_at(schedule(), friday_17, 4)
    assert due == local(MOSCOW, 2026, 3, 30, 12, 0) == utc(2026, 3, 30, 9, 0)
    assert due.tzinfo is UTC


def test_a_holiday_on_monday_pushes_it_to_tuesday() -> None:
    office = schedule(holidays=["2026-03-30"])
    due = expected_response_at(office, local(MOSCOW, 2026, 3, 27, 17, 0), 4)
    assert due == local(MOSCOW, 2026, 3, 31, 12, 0)


def test_consecutive_holidays_are_all_skipped() -> None:
    office = schedule(holidays=["2026-03-30", "2026-03-31", "2026-04-01"])
    due = expected_response_at(office, local(MOSCOW, 2026, 3, 27, 17, 0), 4)
    assert due == local(MOSCOW, 2026, 4, 2, 12, 0)


def test_a_request_inside_hours_counts_from_the_request() -> None:
    due = expected_response_at(schedule(), local(MOSCOW, 2026, 3, 24, 10, 30), 2)
    assert due == local(MOSCOW, 2026, 3, 24, 12, 30)
    due = expected_response_at(schedule(), local(MOSCOW, 2026, 3, 24, 10, 30), 1.25)
    assert due == local(MOSCOW, 2026, 3, 24, 11, 45)


def test_a_request_before_opening_counts_from_the_opening() -> None:
    due = expected_response_at(schedule(), local(MOSCOW, 2026, 3, 24, 6, 0), 2)
    assert due == local(MOSCOW, 2026, 3, 24, 11, 0)


def test_exactly_at_opening() -> None:
    monday_9 = local(MOSCOW, 2026, 3, 23, 9, 0)
    assert is_open(schedule(), monday_9)
    assert next_opening(schedule(), monday_9) == monday_9
    assert expected_response_at(schedule(), monday_9, 9) == local(MOSCOW, 2026, 3, 23, 18, 0)


def test_exactly_at_closing() -> None:
    monday_18 = local(MOSCOW, 2026, 3, 23, 18, 0)
    assert not is_open(schedule(), monday_18)
    assert not is_open(schedule(), monday_18 + timedelta(microseconds=1))
    assert is_open(schedule(), monday_18 - timedelta(microseconds=1))
    assert expected_response_at(schedule(), monday_18, 1) == local(MOSCOW, 2026, 3, 24, 10, 0)
    # Due exactly at a closing: the closing, not the next morning.
    assert expected_response_at(schedule(), local(MOSCOW, 2026, 3, 23, 17, 0), 1) == monday_18


def test_zero_hours_is_due_at_the_start_of_counting() -> None:
    sunday = local(MOSCOW, 2026, 3, 29, 12, 0)
    assert expected_response_at(schedule(), sunday, 0) == local(MOSCOW, 2026, 3, 30, 9, 0)
    tuesday_10 = local(MOSCOW, 2026, 3, 24, 10, 0)
    assert expected_response_at(schedule(), tuesday_10, 0) == tuesday_10


def test_a_whole_working_week() -> None:
    monday_9 = local(MOSCOW, 2026, 3, 23, 9, 0)
    friday_18 = local(MOSCOW, 2026, 3, 27, 18, 0)
    assert expected_response_at(schedule(), monday_9, 45) == friday_18
    assert business_time_between(schedule(), monday_9, friday_18) == timedelta(hours=45)
    assert business_time_between(schedule(), monday_9, monday_9 + timedelta(weeks=4)) == timedelta(
        hours=4 * 45
    )


def test_the_time_zone_of_the_request_does_not_matter() -> None:
    in_moscow = expected_response_at(schedule(), local(MOSCOW, 2026, 3, 27, 17, 0), 4)
    in_utc = expected_response_at(schedule(), utc(2026, 3, 27, 14, 0), 4)
    in_tokyo = expected_response_at(
        schedule(), local(ZoneInfo("Asia/Tokyo"), 2026, 3, 27, 23, 0), 4
    )
    assert in_moscow == in_utc == in_tokyo


# ---------------------------------------------------------------- multi-range days


def test_a_lunch_break_is_not_counted() -> None:
    office = schedule(LUNCH_BREAK)
    assert expected_response_at(office, local(MOSCOW, 2026, 3, 24, 12, 0), 2) == local(
        MOSCOW, 2026, 3, 24, 15, 0
    )
    assert expected_response_at(office, local(MOSCOW, 2026, 3, 24, 13, 30), 1) == local(
        MOSCOW, 2026, 3, 24, 15, 0
    )
    assert not is_open(office, local(MOSCOW, 2026, 3, 24, 13, 30))
    assert next_opening(office, local(MOSCOW, 2026, 3, 24, 13, 30)) == local(
        MOSCOW, 2026, 3, 24, 14, 0
    )
    assert business_time_between(
        office, local(MOSCOW, 2026, 3, 24, 0, 0), local(MOSCOW, 2026, 3, 25, 0, 0)
    ) == timedelta(hours=8)


def test_touching_ranges_count_as_one() -> None:
    office = schedule({"mon": [["12:00", "18:00"], ["09:00", "12:00"]]})
    assert office.weekly.mon == [("09:00", "12:00"), ("12:00", "18:00")]  # sorted
    assert is_open(office, local(MOSCOW, 2026, 3, 23, 12, 0))
    assert expected_response_at(office, local(MOSCOW, 2026, 3, 23, 11, 0), 2) == local(
        MOSCOW, 2026, 3, 23, 13, 0
    )


def test_ranges_ending_at_midnight_run_into_the_next_day() -> None:
    night = schedule({"sun": [["20:00", "24:00"]], "mon": [["00:00", "02:00"]]})
    sunday_23 = local(MOSCOW, 2026, 3, 29, 23, 0)
    assert expected_response_at(night, sunday_23, 2) == local(MOSCOW, 2026, 3, 30, 1, 0)
    assert is_open(night, local(MOSCOW, 2026, 3, 30, 0, 0))
    always = schedule({day: [["00:00", "24:00"]] for day in (*WORKDAYS, "sat", "sun")})
    start = local(MOSCOW, 2026, 3, 1, 0, 0)
    assert expected_response_at(always, start, 24 * 30) == start + timedelta(days=30)


# ---------------------------------------------------------------- daylight saving time


def test_a_weekend_dst_change_does_not_change_business_hours() -> None:
    office = schedule(timezone="Europe/Berlin")
    # Spring: clocks go forward on Sunday 2026-03-29.
    due = expected_response_at(office, local(BERLIN, 2026, 3, 27, 17, 0), 4)
    assert due == local(BERLIN, 2026, 3, 30, 12, 0) == utc(2026, 3, 30, 10, 0)
    # Autumn: clocks go back on Sunday 2026-10-25.
    due = expected_response_at(office, local(BERLIN, 2026, 10, 23, 17, 0), 4)
    assert due == local(BERLIN, 2026, 10, 26, 12, 0) == utc(2026, 10, 26, 11, 0)
    for monday in (local(BERLIN, 2026, 3, 23, 0, 0), local(BERLIN, 2026, 10, 19, 0, 0)):
        week = business_time_between(office, monday, monday + timedelta(days=14))
        assert week == timedelta(hours=90)


def test_a_day_with_a_dst_change_outside_the_hours_is_a_full_day() -> None:
    every_day = schedule(
        {day: [["09:00", "18:00"]] for day in (*WORKDAYS, "sat", "sun")}, "Europe/Berlin"
    )
    for sunday in (date(2026, 3, 29), date(2026, 10, 25)):
        start = local(BERLIN, sunday.year, sunday.month, sunday.day, 0, 0)
        assert business_time_between(every_day, start, start + timedelta(days=1)) == timedelta(
            hours=9
        )


def test_a_dst_change_inside_the_hours_counts_real_time() -> None:
    night = schedule(SUNDAY_NIGHT, "Europe/Berlin")
    # 00:00-06:00 local on 2026-03-29 is 23:00Z to 04:00Z: five real hours.
    spring = business_time_between(night, utc(2026, 3, 28, 12, 0), utc(2026, 3, 30, 0, 0))
    assert spring == timedelta(hours=5)
    # On 2026-10-25 it is 22:00Z to 05:00Z: seven.
    autumn = business_time_between(night, utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 0, 0))
    assert autumn == timedelta(hours=7)
    saturday = local(BERLIN, 2026, 3, 28, 12, 0)
    assert expected_response_at(night, saturday, 5) == local(BERLIN, 2026, 3, 29, 6, 0)
    assert expected_response_at(night, saturday, 5) == utc(2026, 3, 29, 4, 0)
    # Half an hour more than that night holds: into the next Sunday.
    assert expected_response_at(night, saturday, 5.5) == local(BERLIN, 2026, 4, 5, 0, 30)
    # Autumn, from the opening: six hours of seven end at 05:00 CET.
    due = expected_response_at(night, local(BERLIN, 2026, 10, 25, 0, 0), 6)
    assert due == utc(2026, 10, 25, 4, 0) == local(BERLIN, 2026, 10, 25, 5, 0)
    # Open through both 02:30s of the autumn night.
    assert is_open(night, local(BERLIN, 2026, 10, 25, 2, 30, fold=0))
    assert is_open(night, local(BERLIN, 2026, 10, 25, 2, 30, fold=1))


def test_an_opening_skipped_by_the_clocks_opens_at_the_change() -> None:
    night = schedule({"sun": [["02:30", "05:00"]]}, "Europe/Berlin")
    saturday = local(BERLIN, 2026, 3, 28, 12, 0)
    # 02:30 does not exist that night; the clock jumps from 02:00 CET to 03:00 CEST.
    assert next_opening(night, saturday) == utc(2026, 3, 29, 1, 0)
    assert next_opening(night, saturday) == local(BERLIN, 2026, 3, 29, 3, 0)
    assert business_time_between(night, saturday, saturday + timedelta(days=2)) == timedelta(
        hours=2
    )
    swallowed = schedule({"sun": [["02:10", "02:50"]]}, "Europe/Berlin")
    assert business_time_between(swallowed, saturday, saturday + timedelta(days=2)) == timedelta()
    assert next_opening(swallowed, saturday) == local(BERLIN, 2026, 4, 5, 2, 10)


def test_a_closing_shown_twice_by_the_clocks_closes_at_its_last_showing() -> None:
    night = schedule({"sun": [["01:00", "02:30"]]}, "Europe/Berlin")
    # 01:00 CEST (23:00Z) to the second 02:30, in CET (01:30Z).
    saturday = local(BERLIN, 2026, 10, 24, 12, 0)
    assert business_time_between(night, saturday, saturday + timedelta(days=2)) == timedelta(
        hours=2, minutes=30
    )
    split = schedule({"sun": [["01:00", "02:15"], ["02:45", "04:00"]]}, "Europe/Berlin")
    # Both ranges cover part of the repeated hour; it is counted once: 23:00Z-03:00Z.
    assert business_time_between(split, saturday, saturday + timedelta(days=2)) == timedelta(
        hours=4
    )


# ---------------------------------------------------------------- next opening, is open


def test_next_opening_skips_nights_weekends_and_holidays() -> None:
    office = schedule(holidays=[date(2026, 3, 30)])
    assert next_opening(office, local(MOSCOW, 2026, 3, 27, 18, 0)) == local(
        MOSCOW, 2026, 3, 31, 9, 0
    )
    assert not is_open(office, local(MOSCOW, 2026, 3, 30, 12, 0))  # the holiday
    assert is_open(office, local(MOSCOW, 2026, 3, 31, 12, 0))
    assert next_opening(office, utc(2026, 3, 31, 9, 0)) == utc(2026, 3, 31, 9, 0)


def test_the_aggregate_or_its_created_event_can_be_used() -> None:
    [created] = Schedule.create("sch-1", "Office", "Europe/Moscow", NINE_TO_SIX)
    assert isinstance(created, ScheduleCreated)
    friday_17 = local(MOSCOW, 2026, 3, 27, 17, 0)
    assert expected_response_at(created, friday_17, 4) == expected_response_at(
        schedule(), friday_17, 4
    )


def test_a_schedule_without_hours_is_refused() -> None:
    empty = Schedule().applied(
        [
            ScheduleCreated(
                schedule_id="s", name="n", timezone="UTC", weekly=WeeklyHours(), holidays=[]
            )
        ]
    )
    for call in (
        lambda: expected_response_at(empty, utc(2026, 1, 1), 1),
        lambda: next_opening(empty, utc(2026, 1, 1)),
        lambda: is_open(empty, utc(2026, 1, 1)),
    ):
        with pytest.raises(DomainError) as caught:
            call()
        assert caught.value.field == "weekly"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: expected_response_at(s, datetime(2026, 3, 27, 17, 0), 4), "requested_at"),
        (lambda s: expected_response_at(s, utc(2026, 3, 27), -1), "response_hours"),
        (lambda s: expected_response_at(s, utc(2026, 3, 27), float("nan")), "response_hours"),
        (lambda s: expected_response_at(s, utc(2026, 3, 27), float("inf")), "response_hours"),
        (lambda s: expected_response_at(s, utc(2026, 3, 27), 10_001), "response_hours"),
        (lambda s: next_opening(s, datetime(2026, 3, 27)), "at"),
        (lambda s: business_time_between(s, datetime(2026, 3, 27), utc(2026, 3, 28)), "start"),
    ],
)
def test_bad_arguments_name_the_field(call: Callable[[Schedule], object], field: str) -> None:
    with pytest.raises(DomainError) as caught:
        call(schedule())
    assert caught.value.field == field


def test_business_time_of_an_empty_or_backward_span_is_zero() -> None:
    at = local(MOSCOW, 2026, 3, 24, 10, 0)
    assert business_time_between(schedule(), at, at) == timedelta()
    assert business_time_between(schedule(), at, at - timedelta(hours=1)) == timedelta()


# ---------------------------------------------------------------- the aggregate


def test_create_normalises_and_rebuilds() -> None:
    office = schedule(
        {"mon": [["14:00", "18:00"], ["09:00", "13:00"]], "sat": []},
        holidays=["2027-01-01", "2026-12-31", "2026-12-31"],
    )
    assert office.id == "sch-1" and office.name == "Office"
    assert office.weekly.mon == [("09:00", "13:00"), ("14:00", "18:00")]
    assert office.weekly.sat == [] and office.weekly.tue == []
    assert office.holidays == [date(2026, 12, 31), date(2027, 1, 1)]
    assert stream_name("sch-1") == "schedule-sch-1"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"schedule_id": ""}, "schedule_id"),
        ({"name": "  "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "Europe/Moscow "}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": "/etc/localtime"}, "timezone"),
        ({"weekly": {}}, "weekly"),
        ({"weekly": {"mon": []}}, "weekly"),
        ({"weekly": {"monday": [["09:00", "18:00"]]}}, "weekly.monday"),
        ({"weekly": {"mon": "09:00-18:00"}}, "weekly.mon"),
        ({"weekly": {"mon": ["09:00-18:00"]}}, "weekly.mon.0"),
        ({"weekly": {"mon": [["09:00", "12:00", "18:00"]]}}, "weekly.mon.0"),
        ({"weekly": {"mon": [["9:00", "18:00"]]}}, "weekly.mon.0"),
        ({"weekly": {"mon": [["09:00", "25:00"]]}}, "weekly.mon.0"),
        ({"weekly": {"mon": [["09:60", "18:00"]]}}, "weekly.mon.0"),
        ({"weekly": {"mon": [["24:00", "24:00"]]}}, "weekly.mon.0"),
        ({"weekly": {"tue": [["09:00", "18:00"], ["18:00", "09:00"]]}}, "weekly.tue.1"),
        ({"weekly": {"tue": [["09:00", "09:00"]]}}, "weekly.tue.0"),
        ({"weekly": {"wed": [["09:00", "13:00"], ["12:00", "18:00"]]}}, "weekly.wed.1"),
        ({"weekly": {"wed": [["12:00", "18:00"], ["09:00", "13:00"]]}}, "weekly.wed.0"),
        ({"weekly": {"fri": [["00:00", "24:00"], ["10:00", "11:00"]]}}, "weekly.fri.1"),
        ({"holidays": ["2026-13-01"]}, "holidays.0"),
        ({"holidays": ["2026-12-31", "31.12.2026"]}, "holidays.1"),
        ({"holidays": ["20261231"]}, "holidays.0"),
        ({"holidays": "2026-12-31"}, "holidays"),
    ],
)
def test_invalid_schedules_name_the_field(arguments: dict[str, object], field: str) -> None:
    given: dict[str, object] = {
        "schedule_id": "sch-1",
        "name": "Office",
        "timezone": "Europe/Moscow",
        "weekly": NINE_TO_SIX,
        "holidays": [],
    }
    given.update(arguments)
    with pytest.raises(DomainError) as caught:
        Schedule.create(**given)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_change_writes_only_what_changed_and_rebuilds() -> None:
    [created] = Schedule.create("sch-1", "Office", "Europe/Moscow", NINE_TO_SIX)
    office = Schedule().applied([created])
    assert office.change(SchedulePatch(name="Office", timezone="Europe/Moscow")) == []
    events = office.change(SchedulePatch(name="Berlin office", timezone="Europe/Berlin"))
    assert events == [
        ScheduleChanged(
            schedule_id="sch-1",
            changed=["name", "timezone"],
            name="Berlin office",
            timezone="Europe/Berlin",
        )
    ]
    office.applied(events)
    more = office.change(SchedulePatch(weekly=dict(LUNCH_BREAK), holidays=["2026-12-31"]))
    office.applied(more)
    assert office.timezone == "Europe/Berlin"
    assert office.weekly.mon == [("09:00", "13:00"), ("14:00", "18:00")]
    assert office.holidays == [date(2026, 12, 31)]
    again = Schedule.rebuilt([created, *events, *more])
    assert vars(again) == vars(office)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (SchedulePatch(name=None), "name"),
        (SchedulePatch(timezone="Nowhere/City"), "timezone"),
        (SchedulePatch(weekly={"sun": [["10:00", "09:00"]]}), "weekly.sun.0"),
        (SchedulePatch(holidays=["tomorrow"]), "holidays.0"),
    ],
)
def test_invalid_changes_name_the_field(patch: SchedulePatch, field: str) -> None:
    with pytest.raises(DomainError) as caught:
        schedule().change(patch)
    assert caught.value.field == field


def test_an_unknown_schedule_cannot_change() -> None:
    with pytest.raises(NotFound):
        Schedule().change(SchedulePatch(name="x"))
