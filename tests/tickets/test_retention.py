"""Retention of tickets: closed tickets past the archive age are archived, kept whole, and leave the work lists."""

from __future__ import annotations

from datetime import timedelta

from centrala.console.worklists import TicketFilter, filtered_tickets
from centrala.core.settings import get_settings
from centrala.tickets.models import AgentRole, TicketStatus
from centrala.tickets.queries import list_tickets
from centrala.tickets.retention import archive_closed_tickets
from centrala.tickets.search import search
from centrala.tickets.status import change_ticket_status
from centrala.tickets.tickets import note_customer_activity
from tests.factories import NOW, make_agent, make_interaction, make_ticket

AGE = timedelta(days=180)


def _closed(session, *, days_ago: int, subject: str = "Reklamace pračky"):
    ticket = make_ticket(
        session, subject=subject, status=TicketStatus.CLOSED, created_at=NOW - timedelta(days=400)
    )
    ticket.closed_at = NOW - timedelta(days=days_ago)
    session.flush()
    return ticket


def test_closed_tickets_older_than_the_age_are_archived_and_kept_whole(session):
    old = _closed(session, days_ago=181)
    make_interaction(session, ticket=old, text="Pračka netočí bubnem.")
    recent = _closed(session, days_ago=179)
    resolved_long_ago = make_ticket(session, status=TicketStatus.RESOLVED)
    resolved_long_ago.resolved_at = NOW - timedelta(days=300)
    open_ticket = make_ticket(session, status=TicketStatus.OPEN, created_at=NOW - timedelta(days=500))

    assert archive_closed_tickets(session=session, now=NOW, older_than=AGE) == 1
    session.expire_all()
    assert old.archived_at == NOW
    assert old.status is TicketStatus.CLOSED and len(old.interactions) == 1
    assert (
        recent.archived_at is None
        and resolved_long_ago.archived_at is None
        and open_ticket.archived_at is None
    )
    # Archiving again changes nothing.
    assert archive_closed_tickets(session=session, now=NOW + timedelta(days=1), older_than=AGE) == 0
    session.expire_all()
    assert old.archived_at == NOW


def test_archived_tickets_leave_work_lists_but_search_and_the_api_flag_find_them(session):
    archived = _closed(session, days_ago=200, subject="Stará reklamace sušičky")
    kept = _closed(session, days_ago=10, subject="Nová reklamace sušičky")
    archive_closed_tickets(session=session, now=NOW, older_than=AGE)
    admin, _ = make_agent(session, role=AgentRole.ADMIN)

    listed = [
        item.ticket.id
        for item in filtered_tickets(
            session=session, agent=admin, filters=TicketFilter(statuses=(TicketStatus.CLOSED,))
        )
    ]
    assert kept.id in listed and archived.id not in listed

    api_default = [item.ticket.id for item in list_tickets(session=session, statuses=[TicketStatus.CLOSED])]
    assert kept.id in api_default and archived.id not in api_default
    with_archived = [
        item.ticket.id
        for item in list_tickets(session=session, statuses=[TicketStatus.CLOSED], include_archived=True)
    ]
    assert archived.id in with_archived

    found = search(session=session, query="reklamace sušičky", region="CZ")
    assert archived in found.tickets
    assert archived in search(session=session, query=archived.number, region="CZ").tickets


def test_a_reopened_archived_ticket_is_back_in_the_working_set(session):
    by_customer = _closed(session, days_ago=200)
    by_agent = _closed(session, days_ago=200)
    archive_closed_tickets(session=session, now=NOW, older_than=AGE)
    assert by_customer.archived_at is not None and by_agent.archived_at is not None

    note_customer_activity(ticket=by_customer, now=NOW)
    change_ticket_status(
        session=session, ticket=by_agent, status=TicketStatus.OPEN, now=NOW, settings=get_settings()
    )

    assert by_customer.archived_at is None and by_customer.status is TicketStatus.OPEN
    assert by_agent.archived_at is None and by_agent.status is TicketStatus.OPEN
