"""Turn a raw inbound e-mail into domain facts: its contact, its ticket, its interaction on the timeline."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from centrala.core.blobs import BlobStore
from centrala.core.errors import MessageRejected
from centrala.ingest.ledger import load_raw
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.mail.parse import ParsedEmail, parse_email
from centrala.tickets.contacts import match_or_create_contact_by_email
from centrala.tickets.models import Attachment, Channel, Direction, Interaction
from centrala.tickets.tickets import (
    ThreadReason,
    add_interaction,
    find_email_thread,
    note_customer_activity,
    open_ticket,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessOutcome:
    """What processing one raw row did."""

    inbound_id: int
    status: InboundStatus
    interaction_id: int | None = None
    ticket_id: int | None = None
    reason: str | None = None


def lock_inbound_email(*, session: Session, inbound_id: int) -> InboundEmail | None:
    """The raw row, locked for this transaction; None when it is gone or another worker holds it."""
    statement = select(InboundEmail).where(InboundEmail.id == inbound_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return session.scalars(statement).one_or_none()


def process_inbound_email(*, session: Session, inbound_id: int, now: datetime, blobs: BlobStore) -> ProcessOutcome:
    """Process one raw row once: parse, match the contact, thread or open the ticket, record the interaction.

    Rows already processed or quarantined are left alone, so a duplicate or stale job changes nothing. A message
    that cannot become an interaction is quarantined with its reason; its bytes stay in the ledger.
    """
    row = lock_inbound_email(session=session, inbound_id=inbound_id)
    if row is None or row.status != InboundStatus.RECEIVED:
        return ProcessOutcome(inbound_id, row.status if row else InboundStatus.PROCESSED, reason="not pending")
    row.attempts += 1
    raw = load_raw(row=row, blobs=blobs)
    try:
        parsed = parse_email(raw)
    except MessageRejected as rejection:
        return quarantine(row=row, reason=str(rejection), now=now)
    external_id = parsed.message_id or f"sha256:{hashlib.sha256(raw).hexdigest()}"
    row.message_id = external_id

    existing = session.scalar(
        select(Interaction).where(Interaction.channel == Channel.EMAIL, Interaction.external_id == external_id)
    )
    if existing is not None:
        log.info("inbound %s repeats %s of ticket %s", row.id, _short(external_id), existing.ticket_id)
        return _mark_processed(row=row, interaction=existing, now=now, reason=ThreadReason.DUPLICATE)

    interaction = record_email(
        session=session,
        parsed=parsed,
        external_id=external_id,
        mailbox=row.mailbox,
        received_at=row.received_at,
        now=now,
        blobs=blobs,
    )
    session.flush()
    log.info(
        "inbound %s became interaction %s on ticket %s (%s)",
        row.id, interaction.id, interaction.ticket_id, interaction.thread_reason,
    )
    return _mark_processed(row=row, interaction=interaction, now=now)


def record_email(
    *,
    session: Session,
    parsed: ParsedEmail,
    external_id: str,
    mailbox: str,
    received_at: datetime,
    now: datetime,
    blobs: BlobStore,
) -> Interaction:
    """Record a customer's e-mail on their timeline and on the ticket it continues, or on a new ticket."""
    contact = match_or_create_contact_by_email(
        session=session, address=parsed.from_address, name=parsed.from_name, now=now
    )
    match = find_email_thread(
        session=session, referenced_ids=parsed.referenced_ids, subject=parsed.subject, sender=contact
    )
    ticket = match.ticket
    if ticket is None:
        ticket = open_ticket(
            session=session, contact=contact, subject=parsed.subject, channel=Channel.EMAIL, now=now, mailbox=mailbox
        )
    else:
        note_customer_activity(ticket=ticket, now=now)
    interaction = add_interaction(
        session=session,
        ticket=ticket,
        contact=contact,
        channel=Channel.EMAIL,
        direction=Direction.INBOUND,
        external_id=external_id,
        subject=parsed.subject,
        text=parsed.text,
        html=parsed.html,
        author_name=parsed.from_name,
        author_address=parsed.from_address,
        # Our receipt time, not the sender's Date header: senders' clocks are wrong often enough to misorder.
        occurred_at=received_at,
        now=now,
        thread_reason=match.reason,
    )
    for attachment in parsed.attachments:
        interaction.attachments.append(
            Attachment(
                filename=attachment.filename or "attachment",
                content_type=attachment.content_type[:255],
                size=len(attachment.data),
                sha256=blobs.put(attachment.data),
                content_id=attachment.content_id,
                is_inline=attachment.is_inline,
            )
        )
    return interaction


def quarantine(*, row: InboundEmail, reason: str, now: datetime) -> ProcessOutcome:
    """Keep the raw row out of processing with a reason a person can act on; the bytes stay."""
    row.status = InboundStatus.QUARANTINED
    row.reason = reason[:2000]
    row.processed_at = now
    log.warning("inbound %s quarantined: %s", row.id, row.reason)
    return ProcessOutcome(row.id, InboundStatus.QUARANTINED, reason=row.reason)


def _mark_processed(
    *, row: InboundEmail, interaction: Interaction, now: datetime, reason: str | None = None
) -> ProcessOutcome:
    row.status = InboundStatus.PROCESSED
    row.processed_at = now
    row.interaction_id = interaction.id
    row.reason = reason
    return ProcessOutcome(row.id, InboundStatus.PROCESSED, interaction.id, interaction.ticket_id, reason)


def _short(message_id: str) -> str:
    return hashlib.sha256(message_id.encode()).hexdigest()[:12]
