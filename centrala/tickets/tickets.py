"""Ticket services: open a ticket, find the ticket a message continues, record interactions on it."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from centrala.tickets.models import (
    Channel,
    Contact,
    Direction,
    Interaction,
    Ticket,
    TicketStatus,
    parse_ticket_number,
)

# "[#T-1042]" as we write it in outbound subjects; "[T-1042]" as some clients rewrite it.
_SUBJECT_TAG = re.compile(r"\[#?(T-\d{1,12})\]", re.IGNORECASE)
# Reply and forward prefixes of common clients in our languages and their neighbours' (Czech and Polish
# "Odp", German "AW"/"WG", Nordic "SV"/"VS", Ukrainian "Відп").
_REPLY_PREFIX = re.compile(
    r"^\s*((re|fw|fwd|aw|wg|odp|pd|sv|vs|antw|відп|від|отв)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE
)


class ThreadReason(enum.StrEnum):
    """Why an inbound message was filed where it was; stored on the interaction."""

    REFERENCE = "reference"
    SUBJECT_TAG = "subject-tag"
    NEW_TICKET = "new-ticket"
    FOREIGN_REFERENCE = "new-ticket:foreign-reference"
    FOREIGN_SUBJECT_TAG = "new-ticket:foreign-subject-tag"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class ThreadMatch:
    """The ticket a message continues (None: open a new one) and why."""

    ticket: Ticket | None
    reason: ThreadReason


def is_participant(*, session: Session, ticket: Ticket, contact: Contact) -> bool:
    """Whether ``contact`` may add to ``ticket`` by reference: its own contact or someone already on its timeline."""
    if ticket.contact_id == contact.id:
        return True
    return (
        session.scalar(
            select(Interaction.id)
            .where(Interaction.ticket_id == ticket.id, Interaction.contact_id == contact.id)
            .limit(1)
        )
        is not None
    )


def find_email_thread(
    *, session: Session, referenced_ids: Sequence[str], subject: str, sender: Contact
) -> ThreadMatch:
    """Find the ticket an inbound e-mail continues: by stored Message-ID in its references, then by subject tag.

    A reference or tag pointing at a ticket the sender has no part in is refused (a stranger who learns a
    Message-ID or ticket number must not write into someone else's case): the message opens a new ticket.
    """
    refused: ThreadReason | None = None
    if referenced_ids:
        rows = session.execute(
            select(Interaction.external_id, Interaction.ticket_id).where(
                Interaction.channel == Channel.EMAIL,
                Interaction.external_id.in_(list(referenced_ids)[:100]),
                Interaction.ticket_id.is_not(None),
            )
        ).all()
        ticket_by_reference = {external_id: ticket_id for external_id, ticket_id in rows}
        for message_id in referenced_ids:
            ticket_id = ticket_by_reference.get(message_id)
            if ticket_id is None:
                continue
            ticket = session.get(Ticket, ticket_id)
            if ticket is not None and is_participant(session=session, ticket=ticket, contact=sender):
                return ThreadMatch(ticket, ThreadReason.REFERENCE)
            refused = ThreadReason.FOREIGN_REFERENCE
    tag = _SUBJECT_TAG.search(subject)
    if tag:
        ticket_id = parse_ticket_number(tag.group(1))
        ticket = session.get(Ticket, ticket_id) if ticket_id else None
        if ticket is not None:
            if is_participant(session=session, ticket=ticket, contact=sender):
                return ThreadMatch(ticket, ThreadReason.SUBJECT_TAG)
            refused = refused or ThreadReason.FOREIGN_SUBJECT_TAG
    return ThreadMatch(None, refused or ThreadReason.NEW_TICKET)


def clean_subject(subject: str) -> str:
    """The subject without reply prefixes and our ticket tag, for a new ticket's title."""
    subject = _SUBJECT_TAG.sub("", subject)
    subject = _REPLY_PREFIX.sub("", subject)
    return " ".join(subject.split())[:500]


def open_ticket(
    *, session: Session, contact: Contact, subject: str, channel: Channel, now: datetime, mailbox: str | None = None
) -> Ticket:
    """Open a new ticket for ``contact``."""
    ticket = Ticket(
        subject=clean_subject(subject) or "(no subject)",
        status=TicketStatus.NEW,
        channel=channel,
        mailbox=mailbox,
        contact=contact,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    session.flush()
    return ticket


def note_customer_activity(*, ticket: Ticket, now: datetime) -> None:
    """A customer wrote: the ticket is theirs to answer again, reopened if it was resolved or closed."""
    if ticket.status in (TicketStatus.PENDING, TicketStatus.RESOLVED, TicketStatus.CLOSED):
        ticket.status = TicketStatus.OPEN
        ticket.resolved_at = None
        ticket.closed_at = None
    ticket.updated_at = max(ticket.updated_at, now)


def add_interaction(
    *,
    session: Session,
    ticket: Ticket | None,
    contact: Contact,
    channel: Channel,
    direction: Direction,
    occurred_at: datetime,
    now: datetime,
    external_id: str | None = None,
    subject: str = "",
    text: str = "",
    html: str | None = None,
    author_name: str = "",
    author_address: str | None = None,
    agent_id: int | None = None,
    thread_reason: str = "",
) -> Interaction:
    """Append one entry to the contact's timeline, and to the ticket's when there is one."""
    interaction = Interaction(
        ticket=ticket,
        contact=contact,
        channel=channel,
        direction=direction,
        external_id=external_id,
        subject=subject,
        text=text,
        html=html,
        author_name=author_name,
        author_address=author_address,
        agent_id=agent_id,
        thread_reason=thread_reason,
        occurred_at=occurred_at,
        created_at=now,
    )
    session.add(interaction)
    return interaction
