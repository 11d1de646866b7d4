"""Business calendars and business-time arithmetic: worked examples, DST nights, holidays, properties."""

from __future__ import annotations

import math
import pickle
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from centrala.core.errors import InvalidInputError
from centrala.tickets.sla import (
    MAX_BUSINESS_MINUTES,
    BusinessCalendar,
    add_business_minutes,
    business_minutes_between,
    is_open,
    next_open,
    open_intervals,
)

PRAGUE = ZoneInfo("Europe/Prague")
NEW_YORK = ZoneInfo("America/New_York")
NINE_TO_FIVE = {weekday: [(time(9), time(17))] for weekday in range(5)}
NIGHT_SHIFT = {weekday: [(time(22), time(0)), (time(0), time(6))] for weekday in range(7)}
MICROSECOND = timedelta(microseconds=1)


def at(zone: ZoneInfo, *fields: int, fold: int = 0) -> datetime:
    return datetime(*fields, tzinfo=zone, fold=fold)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def local_midnight(zone: ZoneInfo, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


# --- worked examples -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "minutes", "due"),
    [
        pytest.param(
            at(PRAGUE, 2026, 6, 1, 16, 30), 60, at(PRAGUE, 2026, 6, 2, 9, 30), id="mon-evening-to-tue"
        ),
        pytest.param(at(PRAGUE, 2026, 6, 5, 16), 120, at(PRAGUE, 2026, 6, 8, 10), id="friday-to-monday"),
        pytest.param(
            at(PRAGUE, 2026, 6, 5, 19), 30, at(PRAGUE, 2026, 6, 8, 9, 30), id="friday-night-to-monday"
        ),
        pytest.param(at(PRAGUE, 2026, 6, 6, 12), 480, at(PRAGUE, 2026, 6, 8, 17), id="weekend-ends-at-close"),
        pytest.param(at(PRAGUE, 2026, 6, 1, 10), 0, at(PRAGUE, 2026, 6, 1, 10), id="zero-when-open"),
        pytest.param(
            at(PRAGUE, 2026, 6, 6, 10), 0, at(PRAGUE, 2026, 6, 6, 10), id="zero-when-closed-is-start"
        ),
    ],
)
def test_add_business_minutes_on_nine_to_five(start, minutes, due):
    calendar = BusinessCalendar("Europe/Prague", NINE_TO_FIVE)
    result = add_business_minutes(start, minutes, calendar)
    assert result == due
    assert result.tzinfo is UTC
    assert business_minutes_between(start, result, calendar) == minutes


def test_lunch_break_in_a_split_shift_is_not_counted():
    calendar = BusinessCalendar("Europe/Prague", {0: [(time(13), time(17)), (time(8), time(12))]})
    assert add_business_minutes(at(PRAGUE, 2026, 6, 1, 11, 30), 60, calendar) == at(
        PRAGUE, 2026, 6, 1, 13, 30
    )
    assert add_business_minutes(at(PRAGUE, 2026, 6, 1, 12, 15), 30, calendar) == at(
        PRAGUE, 2026, 6, 1, 13, 30
    )
    assert business_minutes_between(at(PRAGUE, 2026, 6, 1, 11), at(PRAGUE, 2026, 6, 1, 14), calendar) == 120
    assert calendar.weekly_hours[0] == ((time(8), time(12)), (time(13), time(17)))
    assert not is_open(at(PRAGUE, 2026, 6, 1, 12), calendar)
    assert is_open(at(PRAGUE, 2026, 6, 1, 13), calendar)
    assert not is_open(at(PRAGUE, 2026, 6, 1, 17), calendar)  # intervals are half-open


@pytest.mark.parametrize(
    ("zone", "country", "subdiv", "start", "due"),
    [
        # 24, 25 and 26 December are Czech public holidays; the 26th is a Saturday anyway.
        pytest.param("Europe/Prague", "CZ", None, (2026, 12, 23, 16), (2026, 12, 28, 10), id="cz-christmas"),
        # 28 October, Independent Czechoslovak State Day (a Wednesday in 2026).
        pytest.param("Europe/Prague", "CZ", None, (2026, 10, 27, 16), (2026, 10, 29, 10), id="cz-28-october"),
        # 11 November, Polish National Independence Day (a Wednesday in 2026).
        pytest.param(
            "Europe/Warsaw", "PL", None, (2026, 11, 10, 16), (2026, 11, 12, 10), id="pl-11-november"
        ),
        # 24 August 2021, Ukrainian Independence Day, with Monday the 23rd a transferred day off.
        pytest.param("Europe/Kyiv", "UA", None, (2021, 8, 20, 16), (2021, 8, 25, 10), id="ua-independence"),
        # 6 January (Epiphany) is a holiday in Bavaria, not in Germany as a whole.
        pytest.param("Europe/Berlin", "DE", "BY", (2026, 1, 5, 16), (2026, 1, 7, 10), id="de-by-epiphany"),
        pytest.param("Europe/Berlin", "DE", None, (2026, 1, 5, 16), (2026, 1, 6, 10), id="de-no-epiphany"),
    ],
)
def test_public_holidays_of_the_country_and_subdivision_are_skipped(zone, country, subdiv, start, due):
    tz = ZoneInfo(zone)
    calendar = BusinessCalendar(zone, NINE_TO_FIVE, holidays_country=country, holidays_subdiv=subdiv)
    assert add_business_minutes(at(tz, *start), 120, calendar) == at(tz, *due)
    assert business_minutes_between(at(tz, *start), at(tz, *due), calendar) == 120


def test_without_a_country_the_national_holiday_is_a_working_day():
    calendar = BusinessCalendar("Europe/Prague", NINE_TO_FIVE)
    assert add_business_minutes(at(PRAGUE, 2026, 10, 27, 16), 120, calendar) == at(PRAGUE, 2026, 10, 28, 10)


def test_extra_holidays_close_whole_local_dates():
    calendar = BusinessCalendar(
        "Europe/Prague", NINE_TO_FIVE, extra_holidays=[date(2026, 6, 2), date(2026, 6, 3)]
    )
    assert add_business_minutes(at(PRAGUE, 2026, 6, 1, 16, 30), 60, calendar) == at(PRAGUE, 2026, 6, 4, 9, 30)
    assert calendar.is_holiday(date(2026, 6, 2))
    assert not is_open(at(PRAGUE, 2026, 6, 2, 12), calendar)


def test_holidays_combine_country_and_extra_dates():
    calendar = BusinessCalendar("Europe/Prague", NINE_TO_FIVE, "CZ", extra_holidays={date(2026, 10, 29)})
    assert add_business_minutes(at(PRAGUE, 2026, 10, 27, 16), 120, calendar) == at(PRAGUE, 2026, 10, 30, 10)


def test_a_holiday_closes_only_its_own_date_of_a_night_shift():
    # The shift starting on the evening of 23 December runs until midnight; the 24th is closed from 00:00.
    calendar = BusinessCalendar("Europe/Prague", NIGHT_SHIFT, "CZ")
    start, end = at(PRAGUE, 2026, 12, 23, 20), at(PRAGUE, 2026, 12, 27, 8)
    assert list(open_intervals(start, end, calendar)) == [
        (at(PRAGUE, 2026, 12, 23, 22), at(PRAGUE, 2026, 12, 24, 0)),
        (at(PRAGUE, 2026, 12, 27, 0), at(PRAGUE, 2026, 12, 27, 6)),
    ]


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(
        ["UTC", "Europe/Prague", "America/New_York", "Australia/Lord_Howe", "America/Santiago"]
    ),
    start=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    minutes=st.integers(0, 200_000) | st.floats(0, 200_000),
)
def test_always_open_calendar_is_plain_elapsed_time(zone, start, minutes):
    calendar = BusinessCalendar.always_open(zone)
    assert add_business_minutes(start, minutes, calendar) == start + timedelta(minutes=minutes)
    end = start + timedelta(minutes=minutes)
    assert business_minutes_between(start, end, calendar) == (end - start) / timedelta(minutes=1)
    assert is_open(start, calendar)


# --- daylight saving time --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "minutes"),
    [
        (PRAGUE, date(2026, 3, 29), 1380),  # 02:00 -> 03:00
        (PRAGUE, date(2026, 10, 25), 1500),  # 03:00 -> 02:00
        (PRAGUE, date(2026, 6, 1), 1440),
        (NEW_YORK, date(2026, 3, 8), 1380),
        (NEW_YORK, date(2026, 11, 1), 1500),
        (ZoneInfo("Australia/Lord_Howe"), date(2026, 4, 5), 1470),  # a half-hour DST
    ],
)
def test_a_24_7_day_lasts_as_long_as_the_local_day(zone, day, minutes):
    calendar = BusinessCalendar.always_open(zone.key)
    start, end = local_midnight(zone, day), local_midnight(zone, day + timedelta(days=1))
    assert business_minutes_between(start, end, calendar) == minutes
    assert add_business_minutes(start, minutes, calendar) == end


@pytest.mark.parametrize(
    ("zone", "evening", "hours"),
    [
        (PRAGUE, date(2026, 3, 28), 7),
        (PRAGUE, date(2026, 10, 24), 9),
        (PRAGUE, date(2026, 6, 6), 8),
        (NEW_YORK, date(2026, 3, 7), 7),
        (NEW_YORK, date(2026, 10, 31), 9),
    ],
)
def test_night_shift_across_a_dst_night_is_one_period_of_real_hours(zone, evening, hours):
    calendar = BusinessCalendar(zone.key, NIGHT_SHIFT)
    shift_start = datetime.combine(evening, time(22), tzinfo=zone)
    shift_end = datetime.combine(evening + timedelta(days=1), time(6), tzinfo=zone)
    assert business_minutes_between(shift_start, shift_end, calendar) == hours * 60
    assert add_business_minutes(shift_start, hours * 60, calendar) == shift_end
    # Midnight is not a boundary: one period, so a warning is never scheduled "at midnight".
    assert list(
        open_intervals(shift_start - timedelta(hours=2), shift_end + timedelta(hours=2), calendar)
    ) == [(shift_start, shift_end)]


def test_wall_clock_hours_stay_wall_clock_hours_on_dst_days():
    calendar = BusinessCalendar("Europe/Prague", {6: [(time(9), time(17))]})
    for sunday in (date(2026, 3, 29), date(2026, 10, 25)):
        opening = datetime.combine(sunday, time(9), tzinfo=PRAGUE)
        assert next_open(local_midnight(PRAGUE, sunday), calendar) == opening
        assert add_business_minutes(opening, 480, calendar) == datetime.combine(
            sunday, time(17), tzinfo=PRAGUE
        )


def test_an_interval_reaching_into_the_spring_gap_ends_at_the_transition():
    calendar = BusinessCalendar("Europe/Prague", {6: [(time(1), time(2, 30))]})
    sunday = date(2026, 3, 29)
    day = (local_midnight(PRAGUE, sunday), local_midnight(PRAGUE, sunday + timedelta(days=1)))
    assert list(open_intervals(*day, calendar)) == [(utc(2026, 3, 29, 0), utc(2026, 3, 29, 1))]
    assert business_minutes_between(*day, calendar) == 60
    normal = (local_midnight(PRAGUE, date(2026, 3, 22)), local_midnight(PRAGUE, date(2026, 3, 23)))
    assert business_minutes_between(*normal, calendar) == 90


def test_an_interval_starting_in_the_spring_gap_opens_at_the_transition():
    calendar = BusinessCalendar("Europe/Prague", {6: [(time(2, 30), time(4))]})
    sunday = date(2026, 3, 29)
    transition = utc(2026, 3, 29, 1)  # 02:00 CET becomes 03:00 CEST
    assert next_open(local_midnight(PRAGUE, sunday), calendar) == transition
    assert add_business_minutes(local_midnight(PRAGUE, sunday), 60, calendar) == at(PRAGUE, 2026, 3, 29, 4)
    assert not is_open(transition - MICROSECOND, calendar)
    assert is_open(transition, calendar)


def test_an_interval_inside_the_repeated_hour_is_open_in_both_passes():
    calendar = BusinessCalendar("Europe/Prague", {6: [(time(2), time(2, 30))]})
    sunday = date(2026, 10, 25)
    day = (local_midnight(PRAGUE, sunday), local_midnight(PRAGUE, sunday + timedelta(days=1)))
    # 02:00 local happens twice: fold=0 is the first pass (CEST), fold=1 the second (CET). PEP 495 makes an
    # ambiguous local time unequal to every time in another zone, so compare in UTC, as the API returns.
    first = at(PRAGUE, 2026, 10, 25, 2, fold=0).astimezone(UTC)
    second = at(PRAGUE, 2026, 10, 25, 2, fold=1).astimezone(UTC)
    assert [first, second] == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1)]
    assert list(open_intervals(*day, calendar)) == [
        (first, first + timedelta(minutes=30)),
        (second, second + timedelta(minutes=30)),
    ]
    assert business_minutes_between(*day, calendar) == 60
    assert add_business_minutes(first, 45, calendar) == second + timedelta(minutes=15)


def test_a_lunch_break_inside_the_repeated_hour_never_double_counts():
    calendar = BusinessCalendar("Europe/Prague", {6: [(time(2), time(2, 15)), (time(2, 30), time(3))]})
    day = (local_midnight(PRAGUE, date(2026, 10, 25)), local_midnight(PRAGUE, date(2026, 10, 26)))
    assert list(open_intervals(*day, calendar)) == [
        (utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 15)),
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 15)),  # 02:30-03:00 CEST then 02:00-02:15 CET
        (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 0)),
    ]
    assert business_minutes_between(*day, calendar) == 90


def test_a_clock_going_back_across_midnight_is_walked_in_real_time_order():
    # America/Goose_Bay, 28 October 1990: at 00:01 (03:01 UTC) the clock went back to 23:01 on the 27th.
    goose_bay = ZoneInfo("America/Goose_Bay")
    saturday_late = BusinessCalendar("America/Goose_Bay", {5: [(time(23), time(0))]})
    window = (utc(1990, 10, 28, 0), utc(1990, 10, 28, 8))
    assert list(open_intervals(*window, saturday_late)) == [
        (utc(1990, 10, 28, 2), utc(1990, 10, 28, 3)),
        (utc(1990, 10, 28, 3, 1), utc(1990, 10, 28, 4)),
    ]
    assert business_minutes_between(*window, saturday_late) == 119
    around_midnight = BusinessCalendar(
        "America/Goose_Bay", {5: [(time(23), time(0))], 6: [(time(0), time(1))]}
    )
    assert list(open_intervals(*window, around_midnight)) == [(utc(1990, 10, 28, 2), utc(1990, 10, 28, 5))]
    start = datetime(1990, 10, 27, 22, tzinfo=goose_bay)
    assert add_business_minutes(start, 61, around_midnight) == utc(1990, 10, 28, 3, 1)
    assert add_business_minutes(start, 120, around_midnight) == utc(1990, 10, 28, 4)


# --- properties ------------------------------------------------------------------------------------------------

# Zones with half-hour DST (Lord Howe), DST at midnight (Santiago), a 45-minute offset (Chatham), no DST
# (Kolkata) and a clock that went back across midnight (Goose Bay, 1987-2006).
PROPERTY_ZONES = {
    "UTC": 2026,
    "Europe/Prague": 2026,
    "America/New_York": 2026,
    "Australia/Lord_Howe": 2026,
    "America/Santiago": 2026,
    "Pacific/Chatham": 2026,
    "Asia/Kolkata": 2026,
    "America/Goose_Bay": 1990,
}


@cache
def transition_hours(zone_key: str, year: int) -> tuple[datetime, ...]:
    """UTC hours at which the zone's offset changes in ``year`` (found by an hourly scan), or its 1 January."""
    zone = ZoneInfo(zone_key)
    hour = utc(year, 1, 1)
    previous = hour.astimezone(zone).utcoffset()
    found = []
    while hour.year == year:
        hour += timedelta(hours=1)
        offset = hour.astimezone(zone).utcoffset()
        if offset != previous:
            found.append(hour)
        previous = offset
    return tuple(found) or (utc(year, 1, 1),)


def quarter_hour(index: int) -> time:
    return time(0) if index == 96 else time(index // 4, index % 4 * 15)


@st.composite
def weekly_hours(draw):
    week = {}
    for weekday in range(7):
        marks = sorted(draw(st.lists(st.integers(0, 96), unique=True, max_size=6)))
        pairs = list(zip(marks[::2], marks[1::2], strict=False))
        if pairs:
            week[weekday] = [(quarter_hour(low), quarter_hour(high)) for low, high in pairs]
    if not week:
        week[draw(st.integers(0, 6))] = [(time(9), time(17))]
    return week


@st.composite
def scenarios(draw, whole_minutes: bool = False):
    """A calendar and a start near one of its zone's DST transitions."""
    zone_key = draw(st.sampled_from(sorted(PROPERTY_ZONES)))
    anchor = draw(st.sampled_from(transition_hours(zone_key, PROPERTY_ZONES[zone_key])))
    start = anchor + timedelta(minutes=draw(st.integers(-4 * 1440, 4 * 1440)))
    if not whole_minutes:
        start += timedelta(microseconds=draw(st.integers(0, 60_000_000)))
    extra = [start.date() + timedelta(days=days) for days in draw(st.sets(st.integers(-3, 20), max_size=5))]
    country = draw(st.sampled_from([None, None, "CZ"]))
    calendar = BusinessCalendar(
        zone_key, draw(weekly_hours()), holidays_country=country, extra_holidays=extra
    )
    shown_in = draw(st.sampled_from([UTC, ZoneInfo(zone_key), PRAGUE]))
    return calendar, start.astimezone(shown_in)


PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(scenario=scenarios(), minutes=st.integers(0, 20_000))
def test_between_inverts_add(scenario, minutes):
    calendar, start = scenario
    due = add_business_minutes(start, minutes, calendar)
    assert due >= start
    assert business_minutes_between(start, due, calendar) == minutes


@PROPERTIES
@given(scenario=scenarios(), minutes=st.floats(0, 20_000, allow_nan=False))
def test_between_inverts_add_for_fractional_minutes(scenario, minutes):
    calendar, start = scenario
    due = add_business_minutes(start, minutes, calendar)
    assert business_minutes_between(start, due, calendar) == pytest.approx(minutes, abs=1e-7)


@PROPERTIES
@given(scenario=scenarios(), first=st.integers(0, 5_000), second=st.integers(0, 5_000))
def test_add_is_monotonic_and_additive(scenario, first, second):
    calendar, start = scenario
    once = add_business_minutes(start, first, calendar)
    total = add_business_minutes(start, first + second, calendar)
    assert once <= total
    assert add_business_minutes(once, second, calendar) == total


@PROPERTIES
@given(scenario=scenarios(), minutes=st.integers(1, 20_000) | st.floats(0.001, 20_000))
def test_a_due_time_is_never_inside_closed_time(scenario, minutes):
    calendar, start = scenario
    due = add_business_minutes(start, minutes, calendar)
    assert is_open(due - MICROSECOND, calendar)


@PROPERTIES
@given(scenario=scenarios(), length=st.integers(-600, 10 * 1440))
def test_business_time_never_exceeds_elapsed_time(scenario, length):
    calendar, start = scenario
    end = start.astimezone(UTC) + timedelta(minutes=length)
    business = business_minutes_between(start, end, calendar)
    assert 0 <= business <= max(length, 0)


@PROPERTIES
@given(scenario=scenarios(whole_minutes=True), length=st.integers(0, 3 * 1440))
def test_between_matches_a_minute_by_minute_count_of_is_open(scenario, length):
    # Quarter-hour intervals and whole-minute offsets and transitions: openness is constant within each
    # UTC minute, so counting open minutes with is_open is an exact, independent oracle. (The steps are taken
    # in UTC: adding a timedelta to a datetime in a ZoneInfo zone is wall-clock arithmetic.)
    calendar, start = scenario
    base = start.astimezone(UTC)
    count = sum(is_open(base + timedelta(minutes=minute), calendar) for minute in range(length))
    assert business_minutes_between(start, base + timedelta(minutes=length), calendar) == count


@PROPERTIES
@given(scenario=scenarios(), length=st.integers(0, 5 * 1440))
def test_open_intervals_are_ordered_maximal_and_agree_with_is_open(scenario, length):
    calendar, start = scenario
    end = start.astimezone(UTC) + timedelta(minutes=length)
    periods = list(open_intervals(start, end, calendar))
    total = timedelta(0)
    previous_end = None
    for period_start, period_end in periods:
        assert start <= period_start < period_end <= end
        assert period_start.tzinfo is UTC and period_end.tzinfo is UTC
        if previous_end is not None:
            assert previous_end < period_start  # touching periods are joined
            gap_middle = previous_end + (period_start - previous_end) / 2
            assert not is_open(gap_middle, calendar)
        assert is_open(period_start, calendar)
        assert is_open(period_end - MICROSECOND, calendar)
        if period_start > start:
            assert not is_open(period_start - MICROSECOND, calendar)
        if period_end < end:
            assert not is_open(period_end, calendar)
        total += period_end - period_start
        previous_end = period_end
    assert total / timedelta(minutes=1) == business_minutes_between(start, end, calendar)


@PROPERTIES
@given(scenario=scenarios())
def test_next_open_is_the_first_open_instant(scenario):
    calendar, start = scenario
    opening = next_open(start, calendar)
    assert opening >= start
    assert is_open(opening, calendar)
    assert business_minutes_between(start, opening, calendar) == 0
    if is_open(start, calendar):
        assert opening == start.astimezone(UTC)  # == with an ambiguous local time is False across zones
    else:
        assert add_business_minutes(start, 0.001, calendar) == opening + timedelta(minutes=0.001)


# --- efficiency ------------------------------------------------------------------------------------------------


def test_ten_thousand_business_minutes_take_well_under_a_millisecond():
    calendar = BusinessCalendar("Europe/Prague", NINE_TO_FIVE, "CZ")
    start = at(PRAGUE, 2026, 12, 1, 10)
    add_business_minutes(start, 10_000, calendar)  # warm the holiday cache
    best = math.inf
    for _ in range(5):
        began = clock.perf_counter()
        for _ in range(20):
            add_business_minutes(start, 10_000, calendar)
        best = min(best, (clock.perf_counter() - began) / 20)
    assert best < 0.001, f"{best * 1e6:.0f} µs per call"


def test_a_decade_of_business_minutes_is_computed_by_whole_weeks():
    calendar = BusinessCalendar("Europe/Prague", NINE_TO_FIVE, "CZ")
    start = at(PRAGUE, 2026, 1, 5, 9)
    began = clock.perf_counter()
    due = add_business_minutes(start, MAX_BUSINESS_MINUTES, calendar)
    assert clock.perf_counter() - began < 2.0
    assert business_minutes_between(start, due, calendar) == MAX_BUSINESS_MINUTES


# --- the calendar value ----------------------------------------------------------------------------------------


def test_calendar_is_an_immutable_hashable_value():
    calendar = BusinessCalendar("Europe/Prague", {0: [(time(9), time(12)), (time(12), time(17))]}, "CZ")
    same = BusinessCalendar(PRAGUE, {0: [(time(9), time(17))]}, "CZ", None, ())
    assert calendar == same and hash(calendar) == hash(same)
    assert calendar.weekly_hours[0] == ((time(9), time(17)),)  # adjacent intervals merge
    assert calendar.weekly_hours[1] == ()
    assert calendar.timezone == "Europe/Prague" and calendar.zone == PRAGUE
    assert calendar != BusinessCalendar("Europe/Prague", {0: [(time(9), time(17))]})
    assert {calendar: "cz"}[same] == "cz"
    with pytest.raises(AttributeError):
        calendar.timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del calendar.weekly_hours
    assert pickle.loads(pickle.dumps(calendar)) == calendar
    assert "Europe/Prague" in repr(calendar)


def test_midnight_as_an_end_means_the_end_of_the_day():
    calendar = BusinessCalendar("UTC", {0: [(time(22), time(0))], 1: [(time(0), time(0))]})
    assert calendar.weekly_minutes == 120 + 1440
    assert business_minutes_between(utc(2026, 6, 1), utc(2026, 6, 3), calendar) == 120 + 1440
    assert is_open(utc(2026, 6, 1, 23, 59, 59, 999_999), calendar)
    assert not is_open(utc(2026, 6, 3), calendar)


def test_always_open_defaults_to_utc():
    calendar = BusinessCalendar.always_open()
    assert calendar.timezone == "UTC"
    assert calendar.weekly_minutes == 7 * 1440


# --- invalid input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "Europe", 42, None])
def test_unknown_time_zone_is_invalid_input(zone):
    with pytest.raises(InvalidInputError, match="time zone|timezone"):
        BusinessCalendar(zone, NINE_TO_FIVE)


@pytest.mark.parametrize(
    ("weekly", "message"),
    [
        ({0: [(time(9), time(12)), (time(11), time(13))]}, "overlap"),
        ({0: [(time(8), time(18)), (time(9), time(10))]}, "overlap"),
        ({0: [(time(17), time(9))]}, "start before it ends"),
        ({0: [(time(9), time(9))]}, "start before it ends"),
        ({0: [(time(0), time(23)), (time(22), time(0))]}, "overlap"),
        ({7: [(time(9), time(17))]}, "weekdays 0"),
        ({-1: [(time(9), time(17))]}, "weekdays 0"),
        ({"mon": [(time(9), time(17))]}, "weekdays 0"),
        ({True: [(time(9), time(17))]}, "weekdays 0"),
        ({0: [("09:00", "17:00")]}, "datetime.time"),
        ({0: [(time(9, tzinfo=UTC), time(17))]}, "naive times"),
        ({0: [(time(9),)]}, "pair"),
        ({0: "09:00-17:00"}, "list"),
        ([(time(9), time(17))], "weekday"),
        ({}, "no working hours"),
        ({weekday: [] for weekday in range(7)}, "no working hours"),
    ],
)
def test_malformed_weekly_hours_are_invalid_input(weekly, message):
    with pytest.raises(InvalidInputError, match=message):
        BusinessCalendar("Europe/Prague", weekly)


@pytest.mark.parametrize(
    ("country", "subdiv", "extra", "message"),
    [
        ("XX", None, (), "XX"),
        ("DE", "ZZ", (), "ZZ"),
        (None, "BY", (), "needs holidays_country"),
        (None, None, [datetime(2026, 12, 24, tzinfo=UTC)], "datetime.date"),
        (None, None, ["2026-12-24"], "datetime.date"),
        (None, None, "2026-12-24", "collection"),
    ],
)
def test_bad_holiday_settings_are_invalid_input(country, subdiv, extra, message):
    with pytest.raises(InvalidInputError, match=message):
        BusinessCalendar("Europe/Prague", NINE_TO_FIVE, country, subdiv, extra)


def test_naive_or_missing_datetimes_are_invalid_input():
    calendar = BusinessCalendar("Europe/Prague", NINE_TO_FIVE)
    naive, aware = datetime(2026, 6, 1, 10), at(PRAGUE, 2026, 6, 1, 10)
    calls = [
        lambda: add_business_minutes(naive, 10, calendar),
        lambda: add_business_minutes(date(2026, 6, 1), 10, calendar),
        lambda: business_minutes_between(naive, aware, calendar),
        lambda: business_minutes_between(aware, naive, calendar),
        lambda: is_open(naive, calendar),
        lambda: next_open(naive, calendar),
        lambda: open_intervals(aware, naive, calendar),  # raised at the call, not at iteration
    ]
    for call in calls:
        with pytest.raises(InvalidInputError, match="aware"):
            call()


@pytest.mark.parametrize(
    "minutes", [-1, -0.001, math.nan, math.inf, True, "10", None, MAX_BUSINESS_MINUTES + 1]
)
def test_bad_minutes_are_invalid_input(minutes):
    calendar = BusinessCalendar("Europe/Prague", NINE_TO_FIVE)
    with pytest.raises(InvalidInputError, match="minutes"):
        add_business_minutes(at(PRAGUE, 2026, 6, 1, 10), minutes, calendar)


def test_holidays_that_close_every_working_day_raise_instead_of_looping():
    first_monday = date(2026, 1, 5)
    mondays = [first_monday + timedelta(weeks=week) for week in range(53 * 11)]
    calendar = BusinessCalendar("Europe/Prague", {0: [(time(9), time(17))]}, extra_holidays=mondays)
    start = at(PRAGUE, 2026, 1, 1)
    with pytest.raises(InvalidInputError, match="no open time"):
        add_business_minutes(start, 1, calendar)
    with pytest.raises(InvalidInputError, match="no open time"):
        next_open(start, calendar)
    assert business_minutes_between(start, at(PRAGUE, 2027, 1, 1), calendar) == 0


def test_a_result_beyond_the_supported_dates_is_invalid_input():
    calendar = BusinessCalendar("Europe/Prague", NINE_TO_FIVE)
    with pytest.raises(InvalidInputError, match="supported date range"):
        add_business_minutes(utc(9999, 12, 20), 100_000, calendar)
