"""What customers do on their own cases outside e-mail (the portal): open a case, reply with files, close
and reopen. A portal message is recorded exactly like an inbound e-mail: an interaction on the ticket, the
ticket reopened when it was waiting or done, and the SLA clocks restarted the same way."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from centrala.core.blobs import BlobStore
from centrala.core.errors import ConflictError, InvalidInputError
from centrala.core.settings import Settings
from centrala.core.text import single_line
from centrala.tickets.models import (
    Attachment,
    CaseType,
    Channel,
    Contact,
    Direction,
    Interaction,
    Ticket,
    TicketStatus,
)
from centrala.tickets.sla_clocks import on_customer_message, start_clocks_for_new_ticket
from centrala.tickets.status import change_ticket_status
from centrala.tickets.tickets import add_interaction, is_past_reopen_window, note_customer_activity, open_ticket

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 20_000
MAX_SUBJECT_LENGTH = 200
MAX_FILES = 5
MAX_FILE_BYTES = 10 * 1024 * 1024
# A submission key is a random token the form carries, so a form sent twice records one message.
_SUBMISSION_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class UploadedFile:
    """A file a customer attached, as received."""

    filename: str
    content_type: str
    data: bytes


def open_customer_case(
    *,
    session: Session,
    contact: Contact,
    subject: str,
    text: str,
    case_type: CaseType,
    files: Sequence[UploadedFile],
    now: datetime,
    settings: Settings,
    blobs: BlobStore,
    submission_key: str | None = None,
) -> Ticket:
    """Open a new case for ``contact`` with their first message; its SLA clocks start as for a new e-mail.

    Raises:
        InvalidInputError: blank or too long subject or text, too many or too large files.
    """
    subject = single_line(subject)
    if not subject:
        raise InvalidInputError("the subject is empty")
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidInputError(f"the subject is longer than {MAX_SUBJECT_LENGTH} characters")
    _check_message(text, files)
    external_id = _external_id(submission_key)
    repeated = _find_submission(session=session, external_id=external_id)
    if repeated is not None and repeated.ticket is not None:
        return repeated.ticket
    ticket = open_ticket(
        session=session, contact=contact, subject=subject, channel=Channel.PORTAL, now=now,
        mailbox=settings.mailboxes[0] if settings.mailboxes else None,
    )
    ticket.case_type = case_type
    _record_message(
        session=session, ticket=ticket, contact=contact, text=text, files=files, now=now, blobs=blobs,
        external_id=external_id, reason="new-ticket",
    )
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=now)
    session.flush()
    log.info("contact %s opened ticket %s in the portal", contact.id, ticket.number)
    return ticket


def add_customer_reply(
    *,
    session: Session,
    ticket: Ticket,
    contact: Contact,
    text: str,
    files: Sequence[UploadedFile],
    now: datetime,
    settings: Settings,
    blobs: BlobStore,
    submission_key: str | None = None,
) -> Interaction:
    """Record a customer's portal reply on ``ticket``, as an inbound e-mail on it would be recorded.

    Raises:
        InvalidInputError: blank or too long text, too many or too large files.
        ConflictError: the ticket was closed longer ago than the reopen window: a new case is needed.
    """
    _check_message(text, files)
    external_id = _external_id(submission_key)
    repeated = _find_submission(session=session, external_id=external_id)
    if repeated is not None:
        return repeated
    if is_past_reopen_window(ticket=ticket, now=now, reopen_within=timedelta(days=settings.reopen_within_days)):
        raise ConflictError("this case was closed too long ago to continue; please open a new case")
    note_customer_activity(ticket=ticket, now=now)
    interaction = _record_message(
        session=session, ticket=ticket, contact=contact, text=text, files=files, now=now, blobs=blobs,
        external_id=external_id, reason="portal",
    )
    on_customer_message(session=session, ticket=ticket, now=now)
    session.flush()
    log.info("contact %s replied on ticket %s in the portal", contact.id, ticket.number)
    return interaction


def close_by_customer(*, session: Session, ticket: Ticket, now: datetime, settings: Settings) -> None:
    """The customer says the case is done: it is closed (no rating is asked, nobody resolved it for them)."""
    if ticket.status is TicketStatus.CLOSED:
        return
    change_ticket_status(session=session, ticket=ticket, status=TicketStatus.CLOSED, now=now, settings=settings)


def reopen_by_customer(*, session: Session, ticket: Ticket, now: datetime, settings: Settings) -> None:
    """The customer reopens a resolved or closed case; its clocks restart as after a customer's message.

    Raises:
        ConflictError: the ticket was closed longer ago than the reopen window.
    """
    if ticket.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        return
    if is_past_reopen_window(ticket=ticket, now=now, reopen_within=timedelta(days=settings.reopen_within_days)):
        raise ConflictError("this case was closed too long ago to reopen; please open a new case")
    change_ticket_status(session=session, ticket=ticket, status=TicketStatus.OPEN, now=now, settings=settings)


def _check_message(text: str, files: Sequence[UploadedFile]) -> None:
    if not text.strip():
        raise InvalidInputError("the message is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidInputError(f"the message is longer than {MAX_TEXT_LENGTH} characters")
    if len(files) > MAX_FILES:
        raise InvalidInputError(f"at most {MAX_FILES} files may be attached")
    if any(len(item.data) > MAX_FILE_BYTES for item in files):
        raise InvalidInputError(f"a file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")


def _external_id(submission_key: str | None) -> str | None:
    if submission_key is None or not _SUBMISSION_KEY.fullmatch(submission_key):
        return None
    return f"portal:{submission_key}"


def _find_submission(*, session: Session, external_id: str | None) -> Interaction | None:
    if external_id is None:
        return None
    return session.scalar(
        select(Interaction).where(Interaction.channel == Channel.PORTAL, Interaction.external_id == external_id)
    )


def _record_message(
    *,
    session: Session,
    ticket: Ticket,
    contact: Contact,
    text: str,
    files: Sequence[UploadedFile],
    now: datetime,
    blobs: BlobStore,
    external_id: str | None,
    reason: str,
) -> Interaction:
    interaction = add_interaction(
        session=session,
        ticket=ticket,
        contact=contact,
        channel=Channel.PORTAL,
        direction=Direction.INBOUND,
        external_id=external_id,
        subject=ticket.subject,
        text=text.strip(),
        full_text=text,
        author_name=contact.name,
        author_address=contact.emails[0].address if contact.emails else None,
        occurred_at=now,
        now=now,
        thread_reason=reason,
    )
    for item in files:
        interaction.attachments.append(
            Attachment(
                filename=clean_filename(item.filename),
                content_type=(item.content_type or "application/octet-stream")[:255],
                size=len(item.data),
                sha256=blobs.put(item.data),
            )
        )
    return interaction


def clean_filename(name: str) -> str:
    """A file name to show: the last path part, without control characters, at most 255 characters."""
    base = re.split(r"[/\\]", name or "")[-1]
    return _UNSAFE_FILENAME.sub("", base).strip()[:255] or "attachment"
