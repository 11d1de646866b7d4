"""Read services for the API and the console: ticket lists and details, contacts and their timelines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, selectinload

from centrala.core.errors import NotFoundError
from centrala.core.ids import MAX_ID
from centrala.tickets.contacts import WITH_CONTACT_DETAILS
from centrala.tickets.models import (
    ClockState,
    Contact,
    Interaction,
    SlaClock,
    Ticket,
    TicketStatus,
    parse_ticket_number,
)

TIMELINE_LIMIT = 200


@dataclass(frozen=True)
class TicketListItem:
    """A ticket as listed, with how many interactions it has."""

    ticket: Ticket
    interaction_count: int


def list_tickets(
    *,
    session: Session,
    statuses: Sequence[TicketStatus] = (),
    contact_id: int | None = None,
    include_archived: bool = False,
    limit: int = 50,
    offset: int = 0,
    only: ColumnElement[bool] | None = None,
) -> list[TicketListItem]:
    """Tickets most recently updated first, optionally only those in ``statuses``, of one contact, or matching
    ``only`` (e.g. the tickets an agent may work); archived tickets only with ``include_archived``."""
    interaction_count = (
        select(func.count(Interaction.id))
        .where(Interaction.ticket_id == Ticket.id)
        .correlate(Ticket)
        .scalar_subquery()
    )
    statement = (
        select(Ticket, interaction_count)
        .options(selectinload(Ticket.contact).selectinload(Contact.emails), selectinload(Ticket.queue))
        .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if statuses:
        statement = statement.where(Ticket.status.in_(list(statuses)))
    if contact_id is not None:
        statement = statement.where(Ticket.contact_id == contact_id)
    if only is not None:
        statement = statement.where(only)
    if not include_archived:
        statement = statement.where(Ticket.archived_at.is_(None))
    return [TicketListItem(ticket, count) for ticket, count in session.execute(statement)]


def ticket_id_from_reference(reference: str | int) -> int | None:
    """The ticket id named by ``reference``: a numeric id (``42``) or a ticket number (``T-1042``)."""
    if isinstance(reference, int):
        ticket_id: int | None = reference
    else:
        reference = reference.strip()
        if reference.isascii() and reference.isdigit():
            ticket_id = int(reference) if len(reference) <= 12 else None
        elif reference[:2].upper() == "T-":
            ticket_id = parse_ticket_number(reference)
        else:
            ticket_id = None
    if ticket_id is None or not 0 < ticket_id <= MAX_ID:
        return None
    return ticket_id


def get_ticket_or_raise(*, session: Session, reference: str | int, with_interactions: bool = False) -> Ticket:
    """The ticket named by an id or a ``T-`` number, optionally with its interactions (in order) loaded.

    Raises:
        NotFoundError: no such ticket.
    """
    ticket_id = ticket_id_from_reference(reference)
    if ticket_id is None:
        raise NotFoundError(f"no ticket {reference}")
    statement = select(Ticket).where(Ticket.id == ticket_id)
    if with_interactions:
        statement = statement.options(
            selectinload(Ticket.contact).selectinload(Contact.emails),
            selectinload(Ticket.queue),
            selectinload(Ticket.interactions).selectinload(Interaction.attachments),
        )
    ticket = session.scalar(statement)
    if ticket is None:
        raise NotFoundError(f"no ticket {reference}")
    return ticket


def list_contacts(*, session: Session, limit: int = 50, offset: int = 0) -> list[Contact]:
    """Contacts, newest first."""
    statement = (
        select(Contact).options(*WITH_CONTACT_DETAILS).order_by(Contact.id.desc()).limit(limit).offset(offset)
    )
    return list(session.scalars(statement))


def get_contact_or_raise(*, session: Session, contact_id: int) -> Contact:
    """The contact with its addresses, numbers and organisation; raises NotFoundError."""
    contact = None
    if 0 < contact_id <= MAX_ID:
        contact = session.scalar(
            select(Contact).where(Contact.id == contact_id).options(*WITH_CONTACT_DETAILS)
        )
    if contact is None:
        raise NotFoundError(f"no contact {contact_id}")
    return contact


def list_contact_timeline(
    *, session: Session, contact_id: int, limit: int = TIMELINE_LIMIT
) -> list[Interaction]:
    """The contact's interactions across all tickets (and outside any), newest first."""
    statement = (
        select(Interaction)
        .where(Interaction.contact_id == contact_id)
        .options(selectinload(Interaction.attachments))
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))


def clocks_due(
    *,
    session: Session,
    now: datetime,
    within_minutes: int,
    limit: int = 50,
    only: ColumnElement[bool] | None = None,
) -> list[tuple[Ticket, SlaClock]]:
    """Open tickets with a running clock breached or due by ``now + within_minutes``, nearest due first (one
    row per clock; an index on the clocks' state and due instant keeps it independent of the open tickets)."""
    rows = session.execute(
        select(Ticket, SlaClock)
        .join(SlaClock, SlaClock.ticket_id == Ticket.id)
        .where(
            SlaClock.state == ClockState.RUNNING,
            SlaClock.due_at.is_not(None),
            SlaClock.due_at <= now + timedelta(minutes=within_minutes),
            *([only] if only is not None else []),
        )
        .order_by(SlaClock.due_at, SlaClock.id)
        .limit(limit)
        .options(selectinload(Ticket.contact).selectinload(Contact.emails), selectinload(Ticket.queue))
    ).all()
    return [(ticket, clock) for ticket, clock in rows]
