"""The console's work lists as the service computes them: which tickets, in which order."""

from __future__ import annotations

from datetime import timedelta

from centrala.console.worklists import LIST_LIMIT, work_lists
from centrala.tickets.models import AgentQueue, ClockState, SlaClock, SlaMetric, Ticket, TicketStatus
from tests.factories import NOW, make_agent, make_queue, make_ticket


def add_clock(session, ticket: Ticket, *, minutes: float, metric=SlaMetric.RESOLUTION, cycle=0, state=None):
    due = NOW + timedelta(minutes=minutes)
    session.add(
        SlaClock(
            ticket_id=ticket.id,
            metric=metric,
            cycle=cycle,
            state=state or ClockState.RUNNING,
            target_minutes=240,
            started_at=NOW,
            running_since=NOW,
            due_at=due,
            next_check_at=due,
        )
    )


def test_breaching_soon_lists_each_open_ticket_once_at_its_nearest_running_clock(session):
    agent, _ = make_agent(session, email="breach@centrala.test")
    hotline, billing = make_queue(session, name="Hotline"), make_queue(session, name="Billing")
    session.add(AgentQueue(agent_id=agent.id, queue_id=hotline.id))
    later = make_ticket(session, subject="later", queue=hotline, status=TicketStatus.OPEN)
    sooner = make_ticket(session, subject="sooner", queue=hotline, status=TicketStatus.OPEN)
    overdue = make_ticket(session, subject="overdue", queue=hotline, status=TicketStatus.NEW)
    elsewhere = make_ticket(session, subject="elsewhere", queue=billing, status=TicketStatus.OPEN)
    closed = make_ticket(session, subject="closed", queue=hotline, status=TicketStatus.CLOSED)
    paused = make_ticket(session, subject="paused", queue=hotline, status=TicketStatus.PENDING)
    session.flush()
    add_clock(session, later, minutes=90)
    add_clock(session, sooner, minutes=120)
    add_clock(session, sooner, minutes=30, metric=SlaMetric.FIRST_RESPONSE)  # its nearest clock counts
    add_clock(session, overdue, minutes=-15)
    add_clock(session, elsewhere, minutes=5)
    add_clock(session, closed, minutes=1)
    add_clock(session, paused, minutes=2, state=ClockState.PAUSED)
    session.flush()

    breaching = work_lists(session=session, agent=agent).breaching

    assert [(item.ticket.subject, item.due_at) for item in breaching] == [
        ("overdue", NOW - timedelta(minutes=15)),
        ("sooner", NOW + timedelta(minutes=30)),
        ("later", NOW + timedelta(minutes=90)),
    ]


def test_breaching_soon_fills_the_list_past_a_ticket_with_many_running_clocks(session):
    supervisor, _ = make_agent(session, email="lead@centrala.test", role="supervisor")
    busy = make_ticket(session, subject="busy", status=TicketStatus.OPEN)
    others = [make_ticket(session, subject=f"other {i}", status=TicketStatus.OPEN) for i in range(LIST_LIMIT)]
    session.flush()
    # More running clocks on one ticket than the list reads at a time, all due before any other ticket's.
    for cycle in range(4 * LIST_LIMIT):
        add_clock(session, busy, minutes=cycle / 100, metric=SlaMetric.NEXT_RESPONSE, cycle=cycle)
    for i, ticket in enumerate(others):
        add_clock(session, ticket, minutes=10 + i)
    session.flush()

    breaching = work_lists(session=session, agent=supervisor).breaching

    assert [item.ticket.subject for item in breaching] == ["busy"] + [
        f"other {i}" for i in range(LIST_LIMIT - 1)
    ]
    assert breaching[0].due_at == NOW
