"""Factories for the domain objects: each builds a valid object with plain defaults, adds it and flushes."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from centrala.tickets.agents import create_agent
from centrala.tickets.models import (
    Agent,
    AgentRole,
    Attachment,
    Channel,
    Contact,
    ContactEmail,
    ContactPhone,
    Direction,
    Interaction,
    Organization,
    Queue,
    Ticket,
    TicketPriority,
    TicketStatus,
)

# A fixed, unremarkable moment (a Monday morning in Prague) so that tests never depend on the wall clock.
NOW = datetime(2025, 3, 3, 8, 30, tzinfo=UTC)

_sequence = itertools.count(1)


def unique_number() -> int:
    """A number no other factory call in this process has returned; for unique addresses and keys."""
    return next(_sequence)


def make_organization(session: Session, *, name: str = "Acme s.r.o.", now: datetime = NOW) -> Organization:
    organization = Organization(name=name, created_at=now)
    session.add(organization)
    session.flush()
    return organization


def make_contact(
    session: Session,
    *,
    name: str = "Jana Nováková",
    emails: Sequence[str] | None = None,
    phones: Sequence[str] = (),
    language: str | None = "cs",
    organization: Organization | None = None,
    now: datetime = NOW,
) -> Contact:
    """A contact; ``emails`` default to one unique address, ``phones`` must already be E.164."""
    if emails is None:
        emails = [f"contact{unique_number()}@example.org"]
    contact = Contact(
        name=name,
        language=language,
        organization=organization,
        created_at=now,
        updated_at=now,
        emails=[ContactEmail(address=address.lower()) for address in emails],
        phones=[ContactPhone(number=number) for number in phones],
    )
    session.add(contact)
    session.flush()
    return contact


def make_agent(
    session: Session,
    *,
    email: str | None = None,
    name: str = "Petr Dvořák",
    role: AgentRole = AgentRole.AGENT,
    now: datetime = NOW,
) -> tuple[Agent, str]:
    """An active agent and its API token."""
    return create_agent(
        session=session, email=email or f"agent{unique_number()}@centrala.test", name=name, role=role, now=now
    )


def make_queue(session: Session, *, name: str | None = None) -> Queue:
    queue = Queue(name=name or f"Support {unique_number()}")
    session.add(queue)
    session.flush()
    return queue


def make_ticket(
    session: Session,
    *,
    contact: Contact | None = None,
    subject: str = "The invoice is wrong",
    status: TicketStatus = TicketStatus.NEW,
    priority: TicketPriority = TicketPriority.NORMAL,
    channel: Channel = Channel.EMAIL,
    mailbox: str | None = "support@localhost",
    assignee: Agent | None = None,
    queue: Queue | None = None,
    created_at: datetime = NOW,
    updated_at: datetime | None = None,
) -> Ticket:
    """A ticket, for a new contact unless one is given."""
    ticket = Ticket(
        subject=subject,
        status=status,
        priority=priority,
        channel=channel,
        mailbox=mailbox,
        contact=contact or make_contact(session),
        assignee=assignee,
        queue=queue,
        created_at=created_at,
        updated_at=updated_at or created_at,
    )
    session.add(ticket)
    session.flush()
    return ticket


def make_interaction(
    session: Session,
    *,
    ticket: Ticket | None = None,
    contact: Contact | None = None,
    channel: Channel = Channel.EMAIL,
    direction: Direction = Direction.INBOUND,
    occurred_at: datetime = NOW,
    subject: str | None = None,
    text: str = "Hello, the invoice for March is wrong.",
    html: str | None = None,
    external_id: str | None = None,
    author_name: str | None = None,
    author_address: str | None = None,
    agent: Agent | None = None,
    thread_reason: str = "",
    attachments: Sequence[tuple[str, str, int]] = (),
) -> Interaction:
    """An interaction on ``ticket`` (by its contact unless ``contact`` is given) or, without a ticket, on
    ``contact`` alone; ``attachments`` are ``(filename, content_type, size)``."""
    if contact is None:
        contact = ticket.contact if ticket is not None else make_contact(session)
    interaction = Interaction(
        ticket=ticket,
        contact=contact,
        channel=channel,
        direction=direction,
        external_id=external_id,
        author_name=author_name if author_name is not None else contact.name,
        author_address=author_address,
        agent_id=agent.id if agent is not None else None,
        subject=subject if subject is not None else (ticket.subject if ticket is not None else ""),
        text=text,
        html=html,
        thread_reason=thread_reason,
        occurred_at=occurred_at,
        created_at=occurred_at,
        attachments=[
            Attachment(
                filename=filename,
                content_type=content_type,
                size=size,
                sha256=hashlib.sha256(filename.encode()).hexdigest(),
            )
            for filename, content_type, size in attachments
        ],
    )
    session.add(interaction)
    session.flush()
    return interaction
