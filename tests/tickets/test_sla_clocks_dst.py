"""SLA clocks across both 2026 daylight-saving changes in Prague, Warsaw and Kyiv: a Friday-evening ticket is
due on Monday morning local time, and a pause over the night of the change counts none of that night."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from centrala.tickets.models import (
    BusinessCalendarRow,
    ClockState,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    TicketStatus,
)
from centrala.tickets.sla_clocks import on_status_change, start_clocks_for_new_ticket
from tests.factories import make_ticket

ZONES = ["Europe/Prague", "Europe/Warsaw", "Europe/Kyiv"]
# The 2026 changes: the last Sundays of March and October (Kyiv at 03:00/04:00 local, the others 02:00/03:00).
SPRING_FRIDAY, SPRING_SATURDAY = (2026, 3, 27), (2026, 3, 28)
AUTUMN_FRIDAY, AUTUMN_SATURDAY = (2026, 10, 23), (2026, 10, 24)


def local(zone: str, day: tuple[int, int, int], hour: int, minute: int = 0) -> datetime:
    return datetime(*day, hour, minute, tzinfo=ZoneInfo(zone))


def policy(session, zone: str, *, hours: dict[str, list[list[str]]], minutes: int) -> None:
    calendar = BusinessCalendarRow(
        name=f"Office {zone}",
        timezone=zone,
        weekly_hours=hours,
        extra_holidays=[],
        updated_at=datetime.now(ZoneInfo(zone)),
    )
    session.add(calendar)
    session.flush()
    session.add(
        SlaPolicy(
            name=f"Standard {zone}",
            is_default=True,
            calendar_id=calendar.id,
            targets={"default": {"first_response": minutes}},
            warn_before_minutes=15,
            escalations=[],
            updated_at=calendar.updated_at,
        )
    )
    session.flush()


def first_response(session, ticket) -> SlaClock:
    return session.scalars(
        select(SlaClock).where(SlaClock.ticket_id == ticket.id, SlaClock.metric == SlaMetric.FIRST_RESPONSE)
    ).one()


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("friday, monday", [(SPRING_FRIDAY, (2026, 3, 30)), (AUTUMN_FRIDAY, (2026, 10, 26))])
def test_a_friday_evening_ticket_is_due_monday_morning_local_time_across_the_change(
    session, zone, friday, monday
):
    policy(session, zone, hours={str(day): [["08:00", "17:00"]] for day in range(5)}, minutes=120)
    created = local(zone, friday, 16)
    ticket = make_ticket(session, created_at=created)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=created)
    session.flush()

    clock = first_response(session, ticket)
    # One business hour on Friday, the second on Monday from 08:00, whatever the offset did in between.
    assert clock.due_at == local(zone, monday, 9)
    assert clock.warn_at == local(zone, monday, 8, 45)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(
    "saturday, night_hours",
    [
        (SPRING_SATURDAY, 5),
        (AUTUMN_SATURDAY, 7),
    ],  # 23:00 to 05:00 local is five real hours in spring, seven in autumn
)
def test_a_pause_over_the_night_of_the_change_counts_none_of_it(session, zone, saturday, night_hours):
    policy(session, zone, hours={str(day): [["00:00", "24:00"]] for day in range(7)}, minutes=8 * 60)
    created = local(zone, saturday, 22)
    ticket = make_ticket(session, created_at=created)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=created)
    session.flush()

    paused_at = local(zone, saturday, 23)
    ticket.status = TicketStatus.PENDING
    on_status_change(
        session=session, ticket=ticket, old=TicketStatus.NEW, new=TicketStatus.PENDING, now=paused_at
    )
    sunday = (saturday[0], saturday[1], saturday[2] + 1)
    resumed_at = local(zone, sunday, 5)
    # (Aware datetimes of one zone subtract as wall times in Python; the real time passes through UTC.)
    assert resumed_at.astimezone(UTC) - paused_at.astimezone(UTC) == timedelta(hours=night_hours)
    ticket.status = TicketStatus.OPEN
    on_status_change(
        session=session, ticket=ticket, old=TicketStatus.PENDING, new=TicketStatus.OPEN, now=resumed_at
    )
    session.flush()

    clock = first_response(session, ticket)
    assert clock.state is ClockState.RUNNING
    assert clock.achieved_minutes == pytest.approx(60)
    assert clock.due_at == resumed_at + timedelta(hours=7)
    paused = [segment for segment in clock.segments if segment.kind.value == "paused"]
    assert [(s.started_at, s.ended_at) for s in paused] == [(paused_at, resumed_at)]
