"""Ticket services: open a ticket, find the ticket a message continues, record interactions on it."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from centrala.core.db import added_rows, next_id
from centrala.core.text import single_line, without_nul
from centrala.tickets.models import (
    Channel,
    Contact,
    Direction,
    Interaction,
    Ticket,
    TicketPriority,
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

    SIGNED_REFERENCE = "signed-reference"
    REPLY_ADDRESS = "reply-address"
    REFERENCE = "reference"
    SUBJECT_TAG = "subject-tag"
    BOUNCE = "bounce-of-our-message"
    NEW_TICKET = "new-ticket"
    FOLLOW_UP = "new-ticket:follow-up"
    FOREIGN_REFERENCE = "new-ticket:foreign-reference"
    FOREIGN_SUBJECT_TAG = "new-ticket:foreign-subject-tag"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class ThreadMatch:
    """The ticket a message continues (None: open a new one) and why."""

    ticket: Ticket | None
    reason: ThreadReason


def is_participant(*, session: Session, ticket: Ticket, contact: Contact, address: str) -> bool:
    """Whether the sender takes part in ``ticket``: its contact, someone on its timeline, or someone CC'd on it.

    Entries added in the session and not written yet count as well, without writing them first.
    """
    if ticket.contact_id == contact.id or (ticket.contact_id is None and ticket.contact is contact):
        return True
    if any(
        _same(interaction.ticket, interaction.ticket_id, ticket)
        and (_same(interaction.contact, interaction.contact_id, contact) or address in (interaction.cc_addresses or ()))
        for interaction in added_rows(session, Interaction)
    ):
        return True
    with session.no_autoflush:
        rows = session.execute(
            select(Interaction.contact_id, Interaction.cc_addresses).where(Interaction.ticket_id == ticket.id)
        ).all()
    return any(contact_id == contact.id or address in (cc or ()) for contact_id, cc in rows)


def _same(related: Ticket | Contact | None, related_id: int | None, row: Ticket | Contact) -> bool:
    """Whether an unwritten row's relation (set as an object, or only as an id) is ``row``."""
    return related is row or (related_id is not None and related_id == row.id)


def follow_merges(*, session: Session, ticket: Ticket) -> Ticket:
    """The ticket a merged ticket lives on in (itself when it was never merged)."""
    seen = {ticket.id}
    while ticket.merged_into_id is not None:
        target = session.get(Ticket, ticket.merged_into_id)
        if target is None or target.id in seen:
            break
        seen.add(target.id)
        ticket = target
    return ticket


# The most Message-IDs of a message's references that threading looks at (a long chain names the oldest first).
MAX_THREAD_REFERENCES = 100
# Above this many Message-IDs a batch's references are looked up per message, in queries of a sane size.
MAX_BATCH_REFERENCES = 5000
_KNOWN_REFERENCES_KEY = "centrala.known_references"


@contextmanager
def references_looked_up(*, session: Session, referenced_ids: Iterable[str]) -> Iterator[list[Ticket]]:
    """Within the block, ``find_email_thread`` learns which written messages ``referenced_ids`` name, and their
    tickets, from one query for a batch of inbound mail instead of one or two per reply. Gives those tickets.

    What another transaction writes while the block runs is not seen. The inbound drain looks for pending
    parents in other drains' batches before it enters the block, so a parent committed in between is waited
    for rather than missed (``process_pending_emails``).
    """
    wanted = frozenset(referenced_ids)
    if not wanted or len(wanted) > MAX_BATCH_REFERENCES:
        yield []
        return
    with session.no_autoflush:
        rows = session.execute(
            select(Interaction.external_id, Ticket)
            .join(Ticket, Interaction.ticket_id == Ticket.id)
            .where(Interaction.channel == Channel.EMAIL, Interaction.external_id.in_(wanted))
        ).all()
    # The tickets themselves are kept here: the session's identity map holds them only while they are in use.
    tickets = {external_id: ticket for external_id, ticket in rows}
    session.info[_KNOWN_REFERENCES_KEY] = (wanted, tickets)
    try:
        yield list(tickets.values())
    finally:
        session.info.pop(_KNOWN_REFERENCES_KEY, None)


@event.listens_for(Session, "after_flush")
def _forget_references_on_flush(session: Session, _flush_context: object) -> None:
    """Once the transaction writes what it added, its new interactions leave the added rows that
    ``find_email_thread`` looks through and are not in what ``references_looked_up`` found either: from then on
    each message asks for itself. (A drain's batch is written when it ends; a flush in between is rare.)"""
    if session.info.get(_KNOWN_REFERENCES_KEY) is not None:
        session.info[_KNOWN_REFERENCES_KEY] = None


def _written_references(session: Session, references: Sequence[str]) -> dict[str, Ticket | int]:
    """The ticket (or its id) of each written e-mail interaction among ``references``."""
    known = session.info.get(_KNOWN_REFERENCES_KEY)
    if known is not None and known[0].issuperset(references):
        return {reference: known[1][reference] for reference in references if reference in known[1]}
    rows = session.execute(
        select(Interaction.external_id, Interaction.ticket_id).where(
            Interaction.channel == Channel.EMAIL,
            Interaction.external_id.in_(references),
            Interaction.ticket_id.is_not(None),
        )
    ).all()
    return {external_id: ticket_id for external_id, ticket_id in rows}


def find_email_thread(
    *,
    session: Session,
    referenced_ids: Sequence[str],
    subject: str,
    sender: Contact,
    sender_address: str,
    signed_ticket_id: int | None = None,
    reply_address_ticket_id: int | None = None,
) -> ThreadMatch:
    """Find the ticket an inbound e-mail continues, trying in order:

    1. a Message-ID of ours in its references, whose HMAC the caller verified (``signed_ticket_id``);
    2. our per-ticket reply address among its recipients, likewise verified (``reply_address_ticket_id``);
    3. any stored Message-ID in its references, when the sender takes part in that ticket;
    4. the ``[#T-1042]`` tag in its subject, when the sender takes part in that ticket.

    A plain reference or tag pointing at a ticket the sender has no part in is refused (whoever learns a
    Message-ID or a ticket number must not write into someone else's case): the message opens a new ticket.
    Signed references and reply addresses cannot be forged; they come only from mail we sent.

    What the session has added and not written (the messages before this one in an inbound drain's batch, and
    their new tickets) is found as if it were written, and nothing is written for the lookups: a reply to a
    message of the same batch threads onto that message's ticket, and the batch is still written in one go.
    """
    with session.no_autoflush:
        return _find_email_thread(
            session=session, referenced_ids=referenced_ids, subject=subject, sender=sender,
            sender_address=sender_address, signed_ticket_id=signed_ticket_id,
            reply_address_ticket_id=reply_address_ticket_id,
        )


def _find_email_thread(
    *,
    session: Session,
    referenced_ids: Sequence[str],
    subject: str,
    sender: Contact,
    sender_address: str,
    signed_ticket_id: int | None,
    reply_address_ticket_id: int | None,
) -> ThreadMatch:
    for ticket_id, reason in (
        (signed_ticket_id, ThreadReason.SIGNED_REFERENCE),
        (reply_address_ticket_id, ThreadReason.REPLY_ADDRESS),
    ):
        ticket = _get_ticket(session, ticket_id) if ticket_id else None
        if ticket is not None:
            return ThreadMatch(follow_merges(session=session, ticket=ticket), reason)
    refused: ThreadReason | None = None
    if referenced_ids:
        references = list(referenced_ids)[:MAX_THREAD_REFERENCES]
        ticket_by_reference = _written_references(session, references)
        wanted = set(references)
        for interaction in added_rows(session, Interaction):
            if interaction.external_id in wanted and interaction.channel is Channel.EMAIL:
                on = interaction.ticket if interaction.ticket is not None else interaction.ticket_id
                if on is not None:
                    ticket_by_reference.setdefault(interaction.external_id, on)
        for message_id in referenced_ids:
            found = ticket_by_reference.get(message_id)
            if found is None:
                continue
            ticket = found if isinstance(found, Ticket) else session.get(Ticket, found)
            if ticket is not None and is_participant(
                session=session, ticket=ticket, contact=sender, address=sender_address
            ):
                return ThreadMatch(follow_merges(session=session, ticket=ticket), ThreadReason.REFERENCE)
            refused = ThreadReason.FOREIGN_REFERENCE
    tag = _SUBJECT_TAG.search(subject)
    if tag:
        ticket_id = parse_ticket_number(tag.group(1))
        ticket = _get_ticket(session, ticket_id) if ticket_id else None
        if ticket is not None:
            if is_participant(session=session, ticket=ticket, contact=sender, address=sender_address):
                return ThreadMatch(follow_merges(session=session, ticket=ticket), ThreadReason.SUBJECT_TAG)
            refused = refused or ThreadReason.FOREIGN_SUBJECT_TAG
    return ThreadMatch(None, refused or ThreadReason.NEW_TICKET)


def _get_ticket(session: Session, ticket_id: int) -> Ticket | None:
    """The ticket with ``ticket_id``, written or only added to the session (a new ticket has its id at once)."""
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        ticket = next((row for row in added_rows(session, Ticket) if row.id == ticket_id), None)
    return ticket


def is_past_reopen_window(*, ticket: Ticket, now: datetime, reopen_within: timedelta) -> bool:
    """Whether ``ticket`` was closed so long ago that a follow-up opens a new ticket instead of reopening it."""
    return ticket.status == TicketStatus.CLOSED and (
        ticket.closed_at is None or now - ticket.closed_at > reopen_within
    )


def clean_subject(subject: str) -> str:
    """The subject without reply prefixes and our ticket tag, for a new ticket's title."""
    subject = _SUBJECT_TAG.sub("", subject)
    subject = _REPLY_PREFIX.sub("", subject)
    return single_line(subject)[:500]


def open_ticket(
    *,
    session: Session,
    contact: Contact,
    subject: str,
    channel: Channel,
    now: datetime,
    mailbox: str | None = None,
    follows_up: Ticket | None = None,
    flush: bool = True,
) -> Ticket:
    """Open a new ticket for ``contact``, linked to the closed ticket it follows up when there is one.

    The ticket has its id, and so its number, at once (``next_id``). Without ``flush`` it is written by
    the caller's next flush, with the rest of what the caller records: the inbound drain writes a batch of
    messages at once instead of stopping at each new ticket.
    """
    ticket = Ticket(
        id=next_id(session, Ticket),
        follows_up_ticket_id=follows_up.id if follows_up else None,
        subject=clean_subject(subject) or "(no subject)",
        status=TicketStatus.NEW,
        # The column defaults, set now: they are otherwise filled in only when the ticket is written, and what
        # runs before that (the SLA policy's choice) reads them.
        priority=TicketPriority.NORMAL,
        custom_fields={},
        channel=channel,
        mailbox=mailbox,
        contact=contact,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    if flush:
        session.flush()
    return ticket


def note_customer_activity(*, ticket: Ticket, now: datetime) -> None:
    """A customer wrote: the ticket is theirs to answer again, reopened if it was resolved or closed."""
    if ticket.status not in (TicketStatus.NEW, TicketStatus.OPEN):
        ticket.status = TicketStatus.OPEN
        ticket.resolved_at = None
        ticket.closed_at = None
        ticket.archived_at = None
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
    full_text: str | None = None,
    classification: str = "normal",
    cc_addresses: Sequence[str] = (),
    flag: str | None = None,
) -> Interaction:
    """Append one entry to the contact's timeline, and to the ticket's when there is one.

    NUL is dropped from the texts: PostgreSQL refuses it in text (a reply or portal message holding one was a
    500), and nobody writes it on purpose.
    """
    interaction = Interaction(
        ticket=ticket,
        contact=contact,
        channel=channel,
        direction=direction,
        external_id=external_id,
        subject=without_nul(subject),
        text=without_nul(text),
        html=without_nul(html),
        author_name=author_name,
        author_address=author_address,
        agent_id=agent_id,
        thread_reason=thread_reason,
        full_text=without_nul(full_text),
        classification=classification,
        cc_addresses=list(cc_addresses),
        flag=flag,
        occurred_at=occurred_at,
        created_at=now,
    )
    session.add(interaction)
    if ticket is not None and channel is not Channel.NOTE:
        announce_interaction(session=session, ticket=ticket, interaction=interaction)
    return interaction


def announce_interaction(*, session: Session, ticket: Ticket, interaction: Interaction) -> None:
    """Tell the agents who work the ticket's queue (everyone, for a ticket in no queue) of a new entry, once the
    transaction commits: the console shows it without a reload."""
    from centrala.core.live import LiveEvent, publish_after_commit
    from centrala.tickets.agents import agents_working_queue

    recipients = agents_working_queue(session=session, queue_id=ticket.queue_id)
    if not recipients:
        return
    publish_after_commit(
        session,
        recipients,
        LiveEvent(
            "interaction",
            {
                "ticket": ticket.number,
                "subject": ticket.subject,
                "new_ticket": ticket.created_at >= interaction.created_at,
                "channel": interaction.channel.value,
                "direction": interaction.direction.value,
                "author": interaction.author_name or interaction.author_address or "",
            },
        ),
    )
