"""Agents change tickets through the API and the SLA clocks follow: waiting on a third party pauses them for
that cause, a customer's message resumes them, a new priority or a queue under another policy moves their
targets, and the list of tickets due soon is sorted by due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from centrala.core import clock
from centrala.tickets.models import (
    ClockState,
    SegmentKind,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    TicketPriority,
    TicketStatus,
)
from centrala.tickets.sla_clocks import on_customer_message, start_clocks_for_new_ticket
from centrala.tickets.tickets import note_customer_activity
from tests.factories import make_agent, make_queue, make_ticket

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture()
def now_is(monkeypatch):
    current = {"now": START}
    monkeypatch.setattr(clock, "now", lambda: current["now"])
    return lambda moment: current.update(now=moment)


@pytest.fixture()
def auth(session) -> dict[str, str]:
    _, token = make_agent(session, email="petr@centrala.test")
    return {"Authorization": f"Bearer {token}"}


def policy(session, name: str, *, default: bool = False, queue=None, targets=None) -> SlaPolicy:
    row = SlaPolicy(
        name=name,
        is_default=default,
        queue_id=queue.id if queue else None,
        precedence=10,
        targets=targets or {"default": {"first_response": 60, "resolution": 480}},
        warn_before_minutes=10,
        escalations=[],
        updated_at=START,
    )
    session.add(row)
    session.flush()
    return row


def first_response(session, ticket) -> SlaClock:
    session.expire_all()
    return session.scalars(
        select(SlaClock).where(SlaClock.ticket_id == ticket.id, SlaClock.metric == SlaMetric.FIRST_RESPONSE)
    ).one()


def test_waiting_on_a_third_party_pauses_the_clocks_for_that_cause_until_the_customer_writes(
    client, session, auth, now_is
):
    policy(session, "Standard", default=True)
    ticket = make_ticket(session, created_at=START)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=START)
    session.flush()

    now_is(START + timedelta(minutes=20))
    response = client.post(
        f"/api/v1/tickets/{ticket.id}/status", json={"status": "third_party"}, headers=auth
    )
    assert response.status_code == 200, response.text
    clock_row = first_response(session, ticket)
    assert clock_row.state is ClockState.PAUSED
    assert clock_row.segments[-1].kind is SegmentKind.PAUSED
    assert clock_row.segments[-1].cause == "waiting on third party"
    assert clock_row.achieved_minutes == pytest.approx(20)

    # The customer writes again two hours later: the ticket is theirs to answer, the clock runs on.
    later = START + timedelta(hours=2, minutes=20)
    now_is(later)
    ticket = clock_row.ticket
    note_customer_activity(ticket=ticket, now=later)
    on_customer_message(session=session, ticket=ticket, now=later)
    session.flush()
    clock_row = first_response(session, ticket)
    assert ticket.status is TicketStatus.OPEN
    assert clock_row.state is ClockState.RUNNING
    assert clock_row.due_at == later + timedelta(minutes=40)  # 20 of 60 minutes were used before the pause


def test_a_new_priority_moves_the_targets_and_due_of_open_clocks(client, session, auth, now_is):
    policy(
        session,
        "Standard",
        default=True,
        targets={"default": {"first_response": 240}, "urgent": {"first_response": 30}},
    )
    ticket = make_ticket(session, created_at=START)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=START)
    session.flush()
    assert first_response(session, ticket).due_at == START + timedelta(minutes=240)

    now_is(START + timedelta(minutes=10))
    response = client.patch(f"/api/v1/tickets/{ticket.id}", json={"priority": "urgent"}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["priority"] == "urgent"
    clock_row = first_response(session, ticket)
    assert clock_row.target_minutes == 30
    assert clock_row.due_at == START + timedelta(minutes=30)
    assert clock_row.ticket.priority is TicketPriority.URGENT


def test_moving_a_ticket_to_a_queue_under_another_policy_moves_its_clocks_there(
    client, session, auth, now_is
):
    policy(session, "Standard", default=True, targets={"default": {"first_response": 240}})
    vip_queue = make_queue(session, name="VIP")
    vip = policy(session, "VIP", queue=vip_queue, targets={"default": {"first_response": 15}})
    ticket = make_ticket(session, created_at=START)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=START)
    session.flush()

    now_is(START + timedelta(minutes=5))
    response = client.patch(f"/api/v1/tickets/{ticket.id}", json={"queue_id": vip_queue.id}, headers=auth)
    assert response.status_code == 200, response.text
    clock_row = first_response(session, ticket)
    assert clock_row.policy_id == vip.id
    assert clock_row.due_at == START + timedelta(minutes=15)  # the 5 minutes already waited still count


def test_ticket_changes_refuse_unknown_agents_and_queues(client, session, auth):
    ticket = make_ticket(session)
    assert (
        client.patch(f"/api/v1/tickets/{ticket.id}", json={"assignee_id": 999999}, headers=auth).status_code
        == 422
    )
    assert (
        client.patch(f"/api/v1/tickets/{ticket.id}", json={"queue_id": 999999}, headers=auth).status_code
        == 422
    )
    assert (
        client.patch(f"/api/v1/tickets/{ticket.id}", json={"priority": None}, headers=auth).status_code == 422
    )
    assert (
        client.patch(f"/api/v1/tickets/{ticket.id}", json={"colour": "red"}, headers=auth).status_code == 422
    )


def test_tickets_due_soon_are_listed_nearest_first_with_the_breached_ones(client, session, auth, now_is):
    policy(session, "Standard", default=True, targets={"default": {"first_response": 60}})
    tickets = []
    for minutes_ago in (0, 50, 90):  # due in 60, in 10, and 30 minutes ago
        ticket = make_ticket(
            session, subject=f"{minutes_ago} min old", created_at=START - timedelta(minutes=minutes_ago)
        )
        start_clocks_for_new_ticket(
            session=session, ticket=ticket, now=START - timedelta(minutes=minutes_ago)
        )
        tickets.append(ticket)
    session.flush()

    due = client.get("/api/v1/sla/due", params={"within_minutes": 30}, headers=auth).json()
    assert [row["ticket"]["subject"] for row in due] == ["90 min old", "50 min old"]
    everything = client.get("/api/v1/sla/due", params={"within_minutes": 120}, headers=auth).json()
    assert [row["ticket"]["subject"] for row in everything] == ["90 min old", "50 min old", "0 min old"]
    assert [row["metric"] for row in everything] == ["first_response"] * 3


def test_a_ticket_shows_each_clock_with_its_business_minutes_left(client, session, auth, now_is):
    policy(session, "Standard", default=True)
    ticket = make_ticket(session, created_at=START)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=START)
    session.flush()
    now_is(START + timedelta(minutes=15))
    detail = client.get(f"/api/v1/tickets/{ticket.id}", headers=auth).json()
    left = {clock["metric"]: clock["remaining_business_minutes"] for clock in detail["sla"]}
    assert left == {"first_response": 45.0, "resolution": 465.0}
    now_is(START + timedelta(minutes=70))
    detail = client.get(f"/api/v1/tickets/{ticket.id}", headers=auth).json()
    assert {c["metric"]: c["remaining_business_minutes"] for c in detail["sla"]}["first_response"] == -10.0
