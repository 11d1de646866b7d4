"""Business calendars and exact business-time arithmetic for SLA clocks (pure functions, no database).

A :class:`BusinessCalendar` says when a team works: an IANA time zone, any number of working intervals per
weekday (split shifts, lunch breaks, night shifts written as ``(time(22), time(0))`` + ``(time(0), time(6))``),
public holidays from the ``holidays`` package by country and subdivision, and manual holiday dates.

**What "open" means.** An instant is open when the wall clock of the calendar's zone, at that instant, shows a
date that is not a holiday and a time inside one of that weekday's intervals. Every other rule follows from
this one definition, and :func:`is_open` is literally it. Intervals are half-open, ``[start, end)``, and an end
of ``time(0, 0)`` means midnight at the end of the day (24:00).

**Daylight saving time.** Working hours are wall-clock hours (09:00-17:00 stays 09:00-17:00 local on a DST day),
but business time is *measured* in real elapsed time between aware instants:

* Spring forward (Europe/Prague 2026-03-29, 02:00 -> 03:00): the clock never shows 02:00-02:59, so that part of
  an interval contributes nothing. A boundary that falls in the gap behaves as if moved to the first valid
  instant after it, the transition itself: ``(time(2, 30), time(4))`` opens at 03:00 CEST and lasts one real
  hour; a 24/7 day lasts 1,380 minutes.
* Fall back (2026-10-25, 03:00 -> 02:00): the clock shows 02:00-02:59 twice, and an interval covering those wall
  times is open during *both* passes, because people are at work during both. ``(time(2), time(2, 30))`` is open
  for two separate real half-hours; ``(time(0), time(0))`` lasts 1,500 minutes. (Resolving an ambiguous
  boundary with one fixed ``fold`` instead would, for a lunch break inside the repeated hour, make the morning
  and the afternoon overlap in real time and count twice.)
* Zones whose clock goes back across midnight (America/Goose_Bay 1987-2006 went from 00:01 back to 23:01 the
  previous day) work the same way: business time is walked in real-time order, never date by date.

**Results are aware UTC datetimes.** Subtracting two datetimes that share one ``ZoneInfo`` is wall-clock
arithmetic in Python (it ignores a DST change between them); in UTC it is real elapsed time. Convert with
``.astimezone(calendar.zone)`` for display.

**Exactness.** Times are exact to the microsecond (minutes are rounded to the microsecond once, on input), and
``business_minutes_between(s, add_business_minutes(s, m, c), c) == m`` for every start ``s`` and whole ``m``.
Both functions walk the calendar one interval at a time and skip whole weeks in one step when the week has no
holiday and no UTC offset change, so 10,000 business minutes cost a few dozen steps, never one per minute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from numbers import Real
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from centrala.core.errors import InvalidInputError

__all__ = [
    "MAX_BUSINESS_MINUTES",
    "BusinessCalendar",
    "add_business_minutes",
    "business_minutes_between",
    "is_open",
    "next_open",
    "open_intervals",
]

# The largest duration add_business_minutes accepts: ten years of round-the-clock minutes. An SLA target is
# hours or days; anything near this is a unit mistake, and refusing it keeps every call short.
MAX_BUSINESS_MINUTES = 10 * 366 * 24 * 60

# Walking further than this (ten years) without meeting an open instant means the calendar's holidays close
# it for good; we raise instead of walking on.
_HORIZON_DAYS = 3660

_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
_ZERO = timedelta(0)
_MIDNIGHT = time(0)
_EPOCH = datetime(1970, 1, 1)
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Wall-clock interval [start, end) as offsets from local midnight; end == _DAY is 24:00.
_Span = tuple[timedelta, timedelta]


class BusinessCalendar:
    """When a team works: a time zone, working intervals per weekday and holidays; an immutable value.

    Args:
        timezone: An IANA zone name (``"Europe/Prague"``) or a ``ZoneInfo``.
        weekly_hours: Weekday (0 = Monday ... 6 = Sunday) -> list of ``(start, end)`` naive ``datetime.time``
            pairs in wall-clock time. ``end == time(0, 0)`` means midnight at the end of the day. Missing
            weekdays are closed. Adjacent intervals are merged; overlapping ones are rejected.
        holidays_country: ISO 3166 code known to the ``holidays`` package (``"CZ"``, ``"PL"``, ``"UA"`` ...);
            its public holidays (with the package's default observed-day rules) close the whole local date.
        holidays_subdiv: A subdivision of that country (``"BY"`` for Bavaria with ``"DE"``).
        extra_holidays: Further closed local dates (``datetime.date``), such as a company day off.

    Raises:
        InvalidInputError: Unknown zone, country or subdivision; a malformed, empty or overlapping interval; a
            weekday key outside 0-6; no working hours on any weekday; an extra holiday that is not a date.

    The attributes hold the normalised value: ``timezone`` is the zone's key, ``weekly_hours`` a 7-tuple indexed
    by weekday of sorted, merged ``(start, end)`` pairs, ``extra_holidays`` a frozenset. Calendars compare and
    hash by value, so they can key caches.
    """

    __slots__ = (
        "_hash",
        "_key",
        "_spans",
        "_week",
        "extra_holidays",
        "holidays_country",
        "holidays_subdiv",
        "timezone",
        "weekly_hours",
        "zone",
    )

    timezone: str
    zone: ZoneInfo
    weekly_hours: tuple[tuple[tuple[time, time], ...], ...]
    holidays_country: str | None
    holidays_subdiv: str | None
    extra_holidays: frozenset[date]

    def __init__(
        self,
        timezone: str | ZoneInfo,
        weekly_hours: Mapping[int, Iterable[tuple[time, time]]],
        holidays_country: str | None = None,
        holidays_subdiv: str | None = None,
        extra_holidays: Iterable[date] = (),
    ) -> None:
        zone = _load_zone(timezone)
        public_hours, spans = _normalise_weekly_hours(weekly_hours)
        week = sum((end - start for day in spans for start, end in day), _ZERO)
        if not week:
            raise InvalidInputError(
                "business calendar has no working hours on any weekday; "
                "use BusinessCalendar.always_open() for a 24/7 calendar"
            )
        _validate_holidays(holidays_country, holidays_subdiv)
        extra = _normalise_extra_holidays(extra_holidays)
        key = (zone.key, public_hours, holidays_country, holidays_subdiv, extra)
        for name, value in (
            ("timezone", zone.key),
            ("zone", zone),
            ("weekly_hours", public_hours),
            ("holidays_country", holidays_country),
            ("holidays_subdiv", holidays_subdiv),
            ("extra_holidays", extra),
            ("_spans", spans),
            ("_week", week),
            ("_key", key),
            ("_hash", hash(key)),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def always_open(cls, timezone: str | ZoneInfo = "UTC") -> BusinessCalendar:
        """A 24/7 calendar without holidays: business time equals real elapsed time."""
        return cls(timezone, {weekday: [(_MIDNIGHT, _MIDNIGHT)] for weekday in range(7)})

    @property
    def weekly_minutes(self) -> float:
        """Open wall-clock minutes in a week without holidays or DST changes."""
        return self._week / _MINUTE

    def is_holiday(self, day: date) -> bool:
        """Whether the local date ``day`` is closed as a holiday (from the country or the extra dates)."""
        if day in self.extra_holidays:
            return True
        if self.holidays_country is None:
            return False
        return day in _holiday_dates(self.holidays_country, self.holidays_subdiv, day.year)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"BusinessCalendar is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"BusinessCalendar is immutable; cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BusinessCalendar):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[BusinessCalendar], tuple[object, ...]]:
        weekly = {weekday: list(day) for weekday, day in enumerate(self.weekly_hours) if day}
        return (
            BusinessCalendar,
            (
                self.timezone,
                weekly,
                self.holidays_country,
                self.holidays_subdiv,
                tuple(sorted(self.extra_holidays)),
            ),
        )

    def __repr__(self) -> str:
        days = ", ".join(
            f"{weekday}: [{', '.join(f'{_format_time(s)}-{_format_time(e, end=True)}' for s, e in day)}]"
            for weekday, day in enumerate(self.weekly_hours)
            if day
        )
        parts = [f"{self.timezone!r}", f"{{{days}}}"]
        if self.holidays_country is not None:
            parts.append(f"holidays_country={self.holidays_country!r}")
        if self.holidays_subdiv is not None:
            parts.append(f"holidays_subdiv={self.holidays_subdiv!r}")
        if self.extra_holidays:
            parts.append(f"extra_holidays={len(self.extra_holidays)} dates")
        return f"BusinessCalendar({', '.join(parts)})"


def add_business_minutes(start: datetime, minutes: float, calendar: BusinessCalendar) -> datetime:
    """The first instant at which ``minutes`` of open business time have elapsed since ``start``, in UTC.

    ``start`` may be open or closed; only open time counts. With ``minutes > 0`` the result is inside an open
    interval or exactly at its end (a target that runs out at 17:00 is due at 17:00, not at the next opening).
    With ``minutes == 0`` the result is ``start`` itself (in UTC) even when closed; use :func:`next_open` for
    "the next moment the clock runs". This keeps ``add(add(s, a), b) == add(s, a + b)`` exact.

    Raises:
        InvalidInputError: ``start`` is naive or not a datetime; ``minutes`` is negative, not finite, not a
            number or above :data:`MAX_BUSINESS_MINUTES`; the result is beyond the supported date range; or the
            calendar's holidays leave no open time for ten years.
    """
    u = _naive_utc(start, "start")
    remaining = _minutes_to_timedelta(minutes)
    if not remaining:
        return u.replace(tzinfo=UTC)
    zone, week = calendar.zone, calendar._week
    try:
        offset = _utc_offset(zone, u)
        closed_days = 0
        while True:
            # A whole week with one UTC offset and no holiday holds exactly one week of wall-clock hours,
            # wherever it starts; skip it in one step. Strictly greater, so the answer is never at its end.
            if remaining > week and _is_plain_week(calendar, u, offset):
                remaining -= week
                u += _WEEK
                closed_days = 0
                continue
            following = u + _DAY
            following_offset = _utc_offset(zone, following)
            pieces = _open_pieces(calendar, u, following, offset, following_offset)
            for piece_start, piece_end in pieces:
                length = piece_end - piece_start
                if length >= remaining:
                    return (piece_start + remaining).replace(tzinfo=UTC)
                remaining -= length
            closed_days = 0 if pieces else closed_days + 1
            if closed_days > _HORIZON_DAYS:
                raise _no_open_time(calendar)
            u, offset = following, following_offset
    except OverflowError as exc:
        raise InvalidInputError("the result lies beyond the supported date range") from exc


def business_minutes_between(start: datetime, end: datetime, calendar: BusinessCalendar) -> float:
    """Minutes of open business time in ``[start, end)``, as real elapsed minutes (a float); 0 if end <= start.

    Exact to the microsecond; the inverse of :func:`add_business_minutes`.

    Raises:
        InvalidInputError: ``start`` or ``end`` is naive or not a datetime, or lies beyond the supported range.
    """
    u = _naive_utc(start, "start")
    stop = _naive_utc(end, "end")
    if stop <= u:
        return 0.0
    zone, week = calendar.zone, calendar._week
    total = _ZERO
    try:
        offset = _utc_offset(zone, u)
        while u < stop:
            if u + _WEEK <= stop and _is_plain_week(calendar, u, offset):
                total += week
                u += _WEEK
                continue
            following = min(u + _DAY, stop)
            following_offset = _utc_offset(zone, following)
            for piece_start, piece_end in _open_pieces(calendar, u, following, offset, following_offset):
                total += piece_end - piece_start
            u, offset = following, following_offset
    except OverflowError as exc:
        raise InvalidInputError("the interval lies beyond the supported date range") from exc
    return total / _MINUTE


def is_open(moment: datetime, calendar: BusinessCalendar) -> bool:
    """Whether business time runs at ``moment``: its local date is no holiday and its wall time is in hours."""
    local = _naive_utc(moment, "moment").replace(tzinfo=UTC).astimezone(calendar.zone)
    day = local.date()
    if calendar.is_holiday(day):
        return False
    since_midnight = local.replace(tzinfo=None) - datetime.combine(day, _MIDNIGHT)
    return any(start <= since_midnight < end for start, end in calendar._spans[day.weekday()])


def next_open(moment: datetime, calendar: BusinessCalendar) -> datetime:
    """The first instant at or after ``moment`` at which business time runs, in UTC (``moment`` if open).

    Raises:
        InvalidInputError: ``moment`` is naive, or the calendar's holidays leave no open time for ten years.
    """
    u = _naive_utc(moment, "moment")
    zone = calendar.zone
    try:
        offset = _utc_offset(zone, u)
        for _ in range(_HORIZON_DAYS + 1):
            following = u + _DAY
            following_offset = _utc_offset(zone, following)
            pieces = _open_pieces(calendar, u, following, offset, following_offset)
            if pieces:
                return pieces[0][0].replace(tzinfo=UTC)
            u, offset = following, following_offset
    except OverflowError as exc:
        raise InvalidInputError("the next opening lies beyond the supported date range") from exc
    raise _no_open_time(calendar)


def open_intervals(
    start: datetime, end: datetime, calendar: BusinessCalendar
) -> Iterator[tuple[datetime, datetime]]:
    """The open periods within ``[start, end)`` as ``(from, to)`` UTC instants, in order and clipped.

    Periods that touch are joined, so a night shift written as 22:00-24:00 plus 00:00-06:00 is one period and
    midnight never appears as a boundary. Consecutive periods are separated by closed time.

    Raises:
        InvalidInputError: ``start`` or ``end`` is naive (raised at the call, not at the first iteration).
    """
    u = _naive_utc(start, "start")
    stop = _naive_utc(end, "end")
    return _iter_open_intervals(u, stop, calendar)


def _iter_open_intervals(
    u: datetime, stop: datetime, calendar: BusinessCalendar
) -> Iterator[tuple[datetime, datetime]]:
    zone = calendar.zone
    pending: tuple[datetime, datetime] | None = None
    try:
        offset = _utc_offset(zone, u) if u < stop else _ZERO
        while u < stop:
            following = min(u + _DAY, stop)
            following_offset = _utc_offset(zone, following)
            for piece_start, piece_end in _open_pieces(calendar, u, following, offset, following_offset):
                if pending is not None and pending[1] == piece_start:
                    pending = (pending[0], piece_end)
                    continue
                if pending is not None:
                    yield pending[0].replace(tzinfo=UTC), pending[1].replace(tzinfo=UTC)
                pending = (piece_start, piece_end)
            u, offset = following, following_offset
    except OverflowError as exc:
        raise InvalidInputError("the interval lies beyond the supported date range") from exc
    if pending is not None:
        yield pending[0].replace(tzinfo=UTC), pending[1].replace(tzinfo=UTC)


# --- the walk in real time -------------------------------------------------------------------------------------
#
# Internally instants are naive UTC datetimes (cheap to compare and add). Real time is walked in steps of at
# most one day. Within a stretch of constant UTC offset the wall clock is simply ``instant + offset``, so the
# open part of the stretch is the wall-clock working time of the stretch shifted back by the offset. A step
# with different offsets at its two ends contains one transition (tzdata never has two offset changes less
# than about four days apart), which we locate to the second by bisection; transitions fall on whole seconds.
# Walking real time, not local dates, keeps the pieces in real-time order even where the local date goes
# backwards at a transition.


def _utc_offset(zone: ZoneInfo, u: datetime) -> timedelta:
    """The zone's UTC offset at the naive UTC instant ``u``."""
    offset = u.replace(tzinfo=UTC).astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has an offset for an aware instant
    return offset


def _transition(zone: ZoneInfo, low: datetime, high: datetime, before: timedelta) -> datetime:
    """The instant in ``(low, high]`` at which the offset stops being ``before``, found to the second."""
    low_s = (low - _EPOCH) // _SECOND
    high_s = -((_EPOCH - high) // _SECOND)  # ceiling
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if _utc_offset(zone, _EPOCH + timedelta(seconds=middle)) == before:
            low_s = middle
        else:
            high_s = middle
    return _EPOCH + timedelta(seconds=high_s)


def _open_pieces(
    calendar: BusinessCalendar, low: datetime, high: datetime, low_offset: timedelta, high_offset: timedelta
) -> list[tuple[datetime, datetime]]:
    """Open pieces of real time in ``[low, high)`` (at most a day), in order, as naive UTC pairs."""
    if low_offset == high_offset:
        stretches = ((low, high, low_offset),)
    else:
        switch = _transition(calendar.zone, low, high, low_offset)
        stretches = ((low, switch, low_offset), (switch, high, high_offset))
    pieces = []
    for stretch_low, stretch_high, offset in stretches:
        if stretch_low < stretch_high:
            for wall_start, wall_end in _wall_open(calendar, stretch_low + offset, stretch_high + offset):
                pieces.append((wall_start - offset, wall_end - offset))
    return pieces


def _wall_open(
    calendar: BusinessCalendar, wall_low: datetime, wall_high: datetime
) -> list[tuple[datetime, datetime]]:
    """Working time within the wall-clock range ``[wall_low, wall_high)``, as naive wall-clock pairs."""
    pieces = []
    day = wall_low.date()
    midnight = datetime.combine(day, _MIDNIGHT)
    while midnight < wall_high:
        if not calendar.is_holiday(day):
            for start, end in calendar._spans[day.weekday()]:
                piece_start = max(midnight + start, wall_low)
                piece_end = min(midnight + end, wall_high)
                if piece_start < piece_end:
                    pieces.append((piece_start, piece_end))
        midnight += _DAY
        day = midnight.date()
    return pieces


def _is_plain_week(calendar: BusinessCalendar, u: datetime, offset: timedelta) -> bool:
    """Whether ``[u, u + 7 days)`` has one UTC offset throughout and touches no holiday."""
    # Offsets sampled a day apart: with transitions always more than a day apart, equal samples mean none.
    zone = calendar.zone
    for days in range(1, 8):
        if _utc_offset(zone, u + timedelta(days=days)) != offset:
            return False
    if calendar.holidays_country is None and not calendar.extra_holidays:
        return True
    first_day = (u + offset).date()
    return not any(calendar.is_holiday(first_day + timedelta(days=days)) for days in range(8))


# --- validation and normalisation ------------------------------------------------------------------------------


def _naive_utc(value: object, name: str) -> datetime:
    """``value`` as a naive UTC datetime, refusing anything but an aware datetime."""
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{name} must be an aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            f"{name} must be timezone-aware, got naive {value.isoformat()}; business time is measured between instants"
        )
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError as exc:
        raise InvalidInputError(f"{name} {value.isoformat()} is beyond the supported date range") from exc


def _minutes_to_timedelta(minutes: object) -> timedelta:
    """Validate a duration in minutes and return it as a timedelta, rounded to the microsecond."""
    if isinstance(minutes, bool) or not isinstance(minutes, Real):
        raise InvalidInputError(f"minutes must be a number, got {type(minutes).__name__}")
    value = minutes if isinstance(minutes, int) else float(minutes)
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"minutes must be a finite number >= 0, got {minutes!r}")
    if value > MAX_BUSINESS_MINUTES:
        raise InvalidInputError(
            f"minutes must be at most {MAX_BUSINESS_MINUTES} (ten years), got {minutes!r}"
        )
    return timedelta(minutes=value)


def _load_zone(timezone: object) -> ZoneInfo:
    if isinstance(timezone, ZoneInfo):
        if timezone.key is None:
            raise InvalidInputError("the time zone must have an IANA key, not be loaded from a file")
        return timezone
    if not isinstance(timezone, str):
        raise InvalidInputError(f"timezone must be an IANA zone name, got {type(timezone).__name__}")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidInputError(
            f"unknown time zone {timezone!r}; expected an IANA name such as 'Europe/Prague'"
        ) from exc


def _time_offset(moment: time) -> timedelta:
    return timedelta(
        hours=moment.hour, minutes=moment.minute, seconds=moment.second, microseconds=moment.microsecond
    )


def _format_time(moment: time, end: bool = False) -> str:
    if end and moment == _MIDNIGHT:
        return "24:00"
    return moment.isoformat(timespec="minutes" if not (moment.second or moment.microsecond) else "auto")


def _normalise_weekly_hours(
    weekly_hours: object,
) -> tuple[tuple[tuple[tuple[time, time], ...], ...], tuple[tuple[_Span, ...], ...]]:
    """Check ``weekly_hours`` and return (sorted merged time pairs, the same as offsets) per weekday 0-6."""
    if not isinstance(weekly_hours, Mapping):
        raise InvalidInputError(
            "weekly_hours must map weekday 0-6 (Monday 0) to a list of (start, end) times"
        )
    days: list[list[tuple[timedelta, timedelta, time, time]]] = [[] for _ in range(7)]
    for weekday, intervals in weekly_hours.items():
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise InvalidInputError(
                f"weekly_hours keys are weekdays 0 (Monday) to 6 (Sunday), got {weekday!r}"
            )
        name = _WEEKDAY_NAMES[weekday]
        if isinstance(intervals, (str, bytes)) or not isinstance(intervals, Iterable):
            raise InvalidInputError(f"weekly_hours[{weekday}] must be a list of (start, end) times")
        for interval in intervals:
            try:
                start, end = interval
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"{name}: {interval!r} is not a (start, end) pair") from exc
            for moment in (start, end):
                if not isinstance(moment, time):
                    raise InvalidInputError(f"{name}: {moment!r} is not a datetime.time")
                if moment.tzinfo is not None:
                    raise InvalidInputError(
                        f"{name}: {moment!r} carries a tzinfo; working hours are wall-clock times in the "
                        "calendar's zone, pass naive times"
                    )
            low = _time_offset(start)
            high = _time_offset(end) or _DAY  # an end of 00:00 is midnight at the end of the day
            if low >= high:
                raise InvalidInputError(
                    f"{name}: interval {_format_time(start)}-{_format_time(end)} must start before it ends "
                    "(write time(0, 0) as the end for midnight; split a night shift at midnight)"
                )
            days[weekday].append((low, high, start, end))
    public: list[tuple[tuple[time, time], ...]] = []
    spans: list[tuple[_Span, ...]] = []
    for weekday, day in enumerate(days):
        day.sort(key=lambda item: (item[0], item[1]))
        merged: list[tuple[timedelta, timedelta, time, time]] = []
        for low, high, start, end in day:
            if merged and low < merged[-1][1]:
                previous = merged[-1]
                raise InvalidInputError(
                    f"{_WEEKDAY_NAMES[weekday]}: intervals {_format_time(previous[2])}-"
                    f"{_format_time(previous[3], end=True)} and {_format_time(start)}-{_format_time(end, end=True)}"
                    " overlap"
                )
            if merged and low == merged[-1][1]:  # adjacent: one interval
                merged[-1] = (merged[-1][0], high, merged[-1][2], end)
            else:
                merged.append((low, high, start, end))
        public.append(tuple((start.replace(fold=0), end.replace(fold=0)) for _, _, start, end in merged))
        spans.append(tuple((low, high) for low, high, _, _ in merged))
    return tuple(public), tuple(spans)


def _validate_holidays(country: object, subdiv: object) -> None:
    if country is None:
        if subdiv is not None:
            raise InvalidInputError("holidays_subdiv needs holidays_country")
        return
    if not isinstance(country, str) or not (subdiv is None or isinstance(subdiv, str)):
        raise InvalidInputError("holidays_country and holidays_subdiv must be strings")
    _country_holidays(country, subdiv, None)


def _normalise_extra_holidays(extra_holidays: object) -> frozenset[date]:
    if isinstance(extra_holidays, (str, bytes)) or not isinstance(extra_holidays, Iterable):
        raise InvalidInputError("extra_holidays must be a collection of datetime.date")
    days = []
    for day in extra_holidays:
        # datetime is a subclass of date; a holiday is a whole local date, never an instant.
        if not isinstance(day, date) or isinstance(day, datetime):
            raise InvalidInputError(f"extra_holidays must hold datetime.date values, got {day!r}")
        days.append(day)
    return frozenset(days)


def _no_open_time(calendar: BusinessCalendar) -> InvalidInputError:
    return InvalidInputError(f"{calendar!r} has no open time within {_HORIZON_DAYS} days")


def _country_holidays(country: str, subdiv: str | None, year: int | None) -> Mapping[date, str]:
    # Imported here: `holidays` takes ~85 ms to import and only calendars with a country need it.
    import holidays

    try:
        return holidays.country_holidays(country, subdiv=subdiv, years=year)
    except NotImplementedError as exc:  # the package's error for an unknown country or subdivision
        raise InvalidInputError(f"holidays: {exc}") from exc


@lru_cache(maxsize=1024)
def _holiday_dates(country: str, subdiv: str | None, year: int) -> frozenset[date]:
    """Public holidays of one country (and subdivision) in one year; cached so calendars stay cheap values."""
    return frozenset(_country_holidays(country, subdiv, year).keys())
