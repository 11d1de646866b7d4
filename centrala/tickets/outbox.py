"""The outbox: agent replies, acknowledgements and notifications queued as composed mail, and their delivery.

Queuing records the timeline entry and the composed bytes in one transaction and sends the job only after it
commits. The job claims the row, sends it outside any transaction and records the outcome; transient failures
wait with back-off and are handed out again by the scheduler's sweep. A reply that finally fails (or bounces)
reopens its ticket and tells the assignee.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape as html_escape

from sqlalchemy import false, func, inspect, or_, select, update
from sqlalchemy.orm import Session

from centrala.core.blobs import BlobStore
from centrala.core.db import is_postgresql
from centrala.core.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidInputError,
    PermanentDeliveryError,
)
from centrala.core.queue import enqueue_after_commit, enqueue_coalesced_after_commit
from centrala.core.settings import Settings
from centrala.core.text import without_nul
from centrala.mail import templates
from centrala.mail.compose import (
    MailAddress,
    OutboundAttachment,
    check_address,
    compose_email,
    is_safe_message_id,
)
from centrala.mail.tokens import make_message_id, make_reply_address, new_nonce
from centrala.tickets.contacts import normalise_email
from centrala.tickets.models import (
    OUTBOUND_TRANSITIONS,
    Agent,
    Attachment,
    Channel,
    Contact,
    ContactEmail,
    Direction,
    Interaction,
    OutboundEmail,
    OutboundKind,
    OutboundState,
    Ticket,
    TicketStatus,
)
from centrala.tickets.replies import MAX_SUBJECT_LENGTH, record_agent_reply, reply_subject
from centrala.tickets.sla_clocks import on_agent_response, sync_clocks_with_status
from centrala.tickets.tickets import add_interaction

log = logging.getLogger(__name__)

SEND_JOB = "centrala.workers.jobs.send_outbound_email"
# Queued rows are sent by drains: one waiting drain is enough for any number of rows, and each sends what is
# due over one connection to the relay, taking SEND_BATCH rows at a time.
SEND_DUE_JOB = "centrala.workers.jobs.send_due_outbound_emails"
SEND_DUE_KEY = "outbound-drain"
# Small: a drain that dies between sending a batch and recording it sends that batch again after SEND_LEASE.
SEND_BATCH = 10
# Minutes to wait after the 1st, 2nd, ... transient failure; after the last one the message has failed.
RETRY_MINUTES = (1, 5, 15, 60, 240)
MAX_ATTEMPTS = len(RETRY_MINUTES) + 1
# A claimed row is not handed out again for this long: longer than any send (the relay timeout, the job
# timeout), so a second job never sends a message that is still on its way; a worker that died meanwhile only
# delays the next attempt by this much.
SEND_LEASE = timedelta(minutes=10)
SYSTEM_AUTHOR = "Centrala"
MAX_ERROR_LENGTH = 1000

# RFC 3834 §2: no automatic response to a null return path, to mailer daemons and list or bounce addresses.
_AUTOMATED_LOCAL_PART = re.compile(
    r"(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?|listserv|majordomo|autoresponder)"
    r"|owner-.*|.*-(request|bounces?|owner)",
)


# --- Queuing ------------------------------------------------------------------------------------------------


def queue_reply(
    *,
    session: Session,
    ticket: Ticket,
    agent: Agent,
    text: str,
    html: str | None,
    now: datetime,
    settings: Settings,
    attachments: Sequence[OutboundAttachment] = (),
    cc: Sequence[str] = (),
) -> OutboundEmail:
    """Record an agent's e-mail reply on the ticket and queue it for sending once the transaction commits.

    The reply goes to the address the contact last wrote from (else their first deliverable one), from the
    ticket's mailbox, answering the customer's last message and carrying our signed Message-ID, which is also
    the interaction's ``external_id`` (without angle brackets, like inbound Message-IDs).

    Raises:
        HeaderInjectionError: a value that would become a header contains CR, LF or a control character.
        InvalidInputError: the text is blank or too long, or the contact has no deliverable address.
    """
    # NUL goes: PostgreSQL refuses it in the reply's row, and no reader wants it in the mail.
    text, html = without_nul(text), without_nul(html)
    mailbox = sender_mailbox(ticket=ticket, settings=settings)
    recipient = reply_recipient(session=session, ticket=ticket)
    cc_addresses = [
        address for address in dict.fromkeys(normalise_email(item) for item in cc) if address != recipient
    ]
    in_reply_to, references = thread_message_ids(session=session, ticket=ticket)
    message_id = _new_message_id(ticket=ticket, mailbox=mailbox, settings=settings)
    subject = reply_subject(ticket)
    # Composed before anything is recorded: a refused header leaves nothing behind.
    # Every e-mail to the customer says where to follow the case; the timeline keeps the agent's words only.
    footer = templates.render_portal_link(
        language=ticket.contact.language,
        mailbox=mailbox,
        link=portal_ticket_url(ticket=ticket, settings=settings),
        template_dir=settings.mail_template_dir,
    )
    message = compose_email(
        sender=MailAddress(mailbox, settings.mail_from_name),
        to=[MailAddress(recipient, ticket.contact.name)],
        cc=[MailAddress(address) for address in cc_addresses],
        subject=subject,
        message_id=message_id,
        date=now,
        text=f"{text.rstrip()}\n\n{footer}",
        html=f"{html}\n<p>{html_escape(footer)}</p>" if html is not None else None,
        reply_to=_reply_address(ticket=ticket, mailbox=mailbox, settings=settings),
        in_reply_to=in_reply_to,
        references=references,
        attachments=attachments,
    )
    interaction = record_agent_reply(
        session=session,
        ticket=ticket,
        agent=agent,
        text=text,
        html=html,
        now=now,
        external_id=message_id.strip("<>"),
    )
    # An agent's e-mail reply is a response: it meets the ticket's response clocks.
    on_agent_response(session=session, ticket=ticket, interaction=interaction, now=now)
    if attachments:
        blobs = BlobStore(settings.blob_dir)
        for item in attachments:
            interaction.attachments.append(
                Attachment(
                    filename=item.filename[:255],
                    content_type=item.content_type[:255],
                    size=len(item.data),
                    sha256=blobs.put(item.data),
                )
            )
    return _add_to_outbox(
        session=session,
        kind=OutboundKind.REPLY,
        ticket=ticket,
        interaction=interaction,
        mailbox=mailbox,
        to=[recipient],
        cc=cc_addresses,
        message_id=message_id,
        raw=message.as_bytes(),
        now=now,
    )


# session.info key: what the acknowledgement rules ask about the recipients of a batch of inbound mail.
_ACK_FACTS_KEY = "centrala.acknowledgement_facts"


@dataclass
class _RecipientFacts:
    """What ``_acknowledgement_refusal`` asks about one address, known since the block began."""

    undeliverable: bool
    earlier_acknowledgements: int  # within the window, committed or flushed before the block
    queued: list[OutboundEmail] = field(default_factory=list)  # acknowledgements to it queued in the block


@dataclass
class _AcknowledgementFacts:
    now: datetime
    recipients: dict[str, _RecipientFacts]


@contextmanager
def acknowledgement_facts_looked_up(
    *, session: Session, recipients: Iterable[str], now: datetime, settings: Settings
) -> Iterator[None]:
    """Within the block, acknowledging a new ticket for one of ``recipients`` at ``now`` asks the database
    nothing: two queries learn, for a batch of inbound mail, which addresses are undeliverable and how many
    acknowledgements each got within the window, instead of one query per message.

    Acknowledgements queued in the block are counted while they last (a rolled-back savepoint takes its own
    with it); an address that a bounce marks in the block is asked about again.
    """
    wanted = {address.strip().lower() for address in recipients if address}
    facts: dict[str, _RecipientFacts] = {}
    if wanted:
        undeliverable = set(
            session.scalars(
                select(ContactEmail.address).where(
                    ContactEmail.address.in_(wanted), ContactEmail.undeliverable_at.is_not(None)
                )
            )
        )
        counts = dict(
            session.execute(
                select(OutboundEmail.recipient, func.count())
                .where(
                    OutboundEmail.kind == OutboundKind.ACKNOWLEDGEMENT,
                    OutboundEmail.recipient.in_(wanted),
                    OutboundEmail.created_at > now - timedelta(minutes=settings.ack_window_minutes),
                )
                .group_by(OutboundEmail.recipient)
            ).all()
        )
        facts = {
            address: _RecipientFacts(address in undeliverable, counts.get(address, 0)) for address in wanted
        }
    session.info[_ACK_FACTS_KEY] = _AcknowledgementFacts(now, facts)
    try:
        yield
    finally:
        session.info.pop(_ACK_FACTS_KEY, None)


def _known_recipient_facts(*, session: Session, recipient: str, now: datetime) -> _RecipientFacts | None:
    known = session.info.get(_ACK_FACTS_KEY)
    if known is None or known.now != now:
        return None
    return known.recipients.get(recipient)


def _still_queued(*, session: Session, outbound: OutboundEmail) -> bool:
    state = inspect(outbound)
    return state.session is session and not state.deleted


def queue_acknowledgement(
    *,
    session: Session,
    ticket: Ticket,
    interaction: Interaction,
    automated: bool,
    now: datetime,
    settings: Settings,
    envelope_sender: str | None = None,
    new_ticket: bool = False,
) -> OutboundEmail | None:
    """Acknowledge the customer's message that opened ``ticket``, unless that would be wrong or too much.

    ``new_ticket``: the ticket was opened in this transaction, so it cannot have been acknowledged yet.

    Nothing is sent (None) when the message was automated (auto-reply, bounce, list mail: the caller's
    classification), when its envelope sender is null (``envelope_sender`` ``""`` or ``"<>"``), when the
    sender is a machine address, one of our mailboxes or undeliverable, when the ticket has been acknowledged
    already, or when the sender got ``ack_max_per_recipient`` acknowledgements within ``ack_window_minutes``
    (the brake on a ping-pong with an auto-responder that does not mark its replies).
    The acknowledgement is ``Auto-Submitted: auto-replied`` (RFC 3834 §5) and on the ticket's timeline.
    """
    recipient = (interaction.author_address or "").strip().lower()
    reason = _acknowledgement_refusal(
        session=session,
        ticket=ticket,
        recipient=recipient,
        automated=automated,
        envelope_sender=envelope_sender,
        now=now,
        settings=settings,
        new_ticket=new_ticket,
    )
    if reason is None:
        try:
            check_address("To", recipient)
        except InvalidInputError:
            # A non-ASCII local part needs SMTPUTF8 (RFC 6531), which we do not send; a control character
            # is in nobody's address. The message is recorded all the same; only the automatic answer is off.
            reason = "an address we cannot write to"
    if reason is not None:
        log.info("no acknowledgement for ticket %s: %s", ticket.number, reason)
        return None
    mailbox = sender_mailbox(ticket=ticket, settings=settings)
    message_id = _new_message_id(ticket=ticket, mailbox=mailbox, settings=settings)
    subject = reply_subject(ticket)
    text = templates.render_acknowledgement(
        language=ticket.contact.language,
        mailbox=mailbox,
        ticket_number=ticket.number,
        portal_url=portal_ticket_url(ticket=ticket, settings=settings),
        team=settings.mail_from_name,
        template_dir=settings.mail_template_dir,
    )
    parent = interaction.external_id
    parent = parent if parent and not parent.startswith("sha256:") and is_safe_message_id(parent) else None
    message = compose_email(
        sender=MailAddress(mailbox, settings.mail_from_name),
        to=[MailAddress(recipient, interaction.author_name)],
        subject=subject,
        message_id=message_id,
        date=now,
        text=text,
        reply_to=_reply_address(ticket=ticket, mailbox=mailbox, settings=settings),
        in_reply_to=parent,
        auto_submitted="auto-replied",
    )
    acknowledgement = add_interaction(
        session=session,
        ticket=ticket,
        contact=ticket.contact,
        channel=Channel.EMAIL,
        direction=Direction.OUTBOUND,
        external_id=message_id.strip("<>"),
        subject=subject,
        text=text,
        author_name=settings.mail_from_name,
        author_address=mailbox,
        occurred_at=now,
        now=now,
    )
    outbound = _add_to_outbox(
        session=session,
        kind=OutboundKind.ACKNOWLEDGEMENT,
        ticket=ticket,
        interaction=acknowledgement,
        mailbox=mailbox,
        to=[recipient],
        cc=[],
        message_id=message_id,
        raw=message.as_bytes(),
        now=now,
        # Written with the message it answers (the drain flushes each message once): nothing here needs its id.
        flush=False,
    )
    known = _known_recipient_facts(session=session, recipient=recipient, now=now)
    if known is not None:
        known.queued.append(outbound)
    return outbound


def queue_agent_notification(
    *,
    session: Session,
    ticket: Ticket,
    agent: Agent,
    subject: str,
    text: str,
    now: datetime,
    settings: Settings,
    interaction: Interaction | None = None,
) -> OutboundEmail:
    """Queue an e-mail to an agent about ``ticket`` (``Auto-Submitted: auto-generated``, RFC 3834 §5)."""
    return _queue_notification(
        session=session, ticket=ticket, recipient=MailAddress(agent.email, agent.name), subject=subject,
        text=text, now=now, settings=settings, interaction=interaction,
    )


def queue_address_notification(
    *,
    session: Session,
    ticket: Ticket,
    address: str,
    subject: str,
    text: str,
    now: datetime,
    settings: Settings,
) -> OutboundEmail:
    """Queue an e-mail about ``ticket`` to an address of ours (a queue's or a team lead's), like an agent's."""
    return _queue_notification(
        session=session, ticket=ticket, recipient=MailAddress(normalise_email(address), ""), subject=subject,
        text=text, now=now, settings=settings,
    )


def _queue_notification(
    *,
    session: Session,
    ticket: Ticket,
    recipient: MailAddress,
    subject: str,
    text: str,
    now: datetime,
    settings: Settings,
    interaction: Interaction | None = None,
) -> OutboundEmail:
    mailbox = sender_mailbox(ticket=ticket, settings=settings)
    message_id = _new_message_id(ticket=ticket, mailbox=mailbox, settings=settings)
    subject = f"[#{ticket.number}] {' '.join(subject.split())}"[:MAX_SUBJECT_LENGTH]
    message = compose_email(
        sender=MailAddress(mailbox, settings.mail_from_name),
        to=[recipient],
        subject=subject,
        message_id=message_id,
        date=now,
        text=text,
        auto_submitted="auto-generated",
    )
    return _add_to_outbox(
        session=session,
        kind=OutboundKind.NOTIFICATION,
        ticket=ticket,
        interaction=interaction,
        mailbox=mailbox,
        to=[recipient.address],
        cc=[],
        message_id=message_id,
        raw=message.as_bytes(),
        now=now,
    )


def queue_sign_in_link(
    *, session: Session, contact: Contact, address: str, link: str, now: datetime, settings: Settings
) -> OutboundEmail:
    """Queue the portal's sign-in e-mail carrying the one-time ``link`` to ``address``, one of the contact's.

    It is ``Auto-Submitted: auto-generated`` (RFC 3834 §5) and recorded on no timeline: the link is a secret
    for the person alone, and the raw bytes in the outbox are kept only until the link expires anyway.
    """
    if not settings.mailboxes:
        raise ConfigurationError("no mailbox is configured to send from (CENTRALA_MAILBOXES)")
    mailbox = settings.mailboxes[0]
    # Not a ticket's signed id: an answer to this mail must thread nowhere.
    message_id = f"<portal.{new_nonce()}@{mailbox.rsplit('@', 1)[1]}>"
    text = templates.render_sign_in(
        language=contact.language, mailbox=mailbox, link=link, team=settings.mail_from_name,
        template_dir=settings.mail_template_dir,
    )
    message = compose_email(
        sender=MailAddress(mailbox, settings.mail_from_name),
        to=[MailAddress(address, contact.name)],
        subject=_SIGN_IN_SUBJECTS[templates.language_for(contact.language)],
        message_id=message_id,
        date=now,
        text=text,
        auto_submitted="auto-generated",
    )
    return _add_to_outbox(
        session=session, kind=OutboundKind.SIGN_IN, ticket=None, interaction=None, mailbox=mailbox,
        to=[address], cc=[], message_id=message_id, raw=message.as_bytes(), now=now,
    )


def queue_survey_request(
    *, session: Session, ticket: Ticket, link: str, now: datetime, settings: Settings
) -> OutboundEmail | None:
    """Ask the ticket's customer to rate its resolution at ``link``; None when they have no deliverable address."""
    try:
        recipient = reply_recipient(session=session, ticket=ticket)
    except InvalidInputError:
        log.info("no survey request for ticket %s: no deliverable address", ticket.number)
        return None
    mailbox = sender_mailbox(ticket=ticket, settings=settings)
    message_id = _new_message_id(ticket=ticket, mailbox=mailbox, settings=settings)
    text = templates.render_survey(
        language=ticket.contact.language, mailbox=mailbox, ticket_number=ticket.number, link=link,
        team=settings.mail_from_name, template_dir=settings.mail_template_dir,
    )
    message = compose_email(
        sender=MailAddress(mailbox, settings.mail_from_name),
        to=[MailAddress(recipient, ticket.contact.name)],
        subject=reply_subject(ticket),
        message_id=message_id,
        date=now,
        text=text,
        reply_to=_reply_address(ticket=ticket, mailbox=mailbox, settings=settings),
        auto_submitted="auto-generated",
    )
    return _add_to_outbox(
        session=session, kind=OutboundKind.SURVEY, ticket=ticket, interaction=None, mailbox=mailbox,
        to=[recipient], cc=[], message_id=message_id, raw=message.as_bytes(), now=now,
    )


_SIGN_IN_SUBJECTS = {
    "en": "Your sign-in link",
    "cs": "Váš odkaz pro přihlášení",
    "pl": "Twój link do logowania",
    "uk": "Ваше посилання для входу",
}


def sender_mailbox(*, ticket: Ticket, settings: Settings) -> str:
    """The mailbox the ticket came in on, else the first configured one: replies come from there."""
    if ticket.mailbox:
        return ticket.mailbox
    if not settings.mailboxes:
        raise ConfigurationError("no mailbox is configured to send from (CENTRALA_MAILBOXES)")
    return settings.mailboxes[0]


def reply_recipient(*, session: Session, ticket: Ticket) -> str:
    """The contact's address the customer last wrote from on this ticket, else their first deliverable one.

    Raises:
        InvalidInputError: every address of the contact is undeliverable, or they have none.
    """
    deliverable = [email.address for email in ticket.contact.emails if email.undeliverable_at is None]
    if not deliverable:
        raise InvalidInputError("the ticket's contact has no deliverable e-mail address")
    last_sender = session.scalar(
        select(Interaction.author_address)
        .where(
            Interaction.ticket_id == ticket.id,
            Interaction.channel == Channel.EMAIL,
            Interaction.direction == Direction.INBOUND,
            Interaction.author_address.is_not(None),
        )
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(1)
    )
    return last_sender if last_sender in deliverable else deliverable[0]


def thread_message_ids(*, session: Session, ticket: Ticket) -> tuple[str | None, list[str]]:
    """``(in_reply_to, references)`` for a new message on the ticket, ids without angle brackets.

    In-Reply-To is the customer's last message; References are the ticket's e-mail in order (compose keeps
    the root and the newest). Ids we made up for messages without one (``sha256:...``) are left out.
    """
    rows = session.execute(
        select(Interaction.external_id, Interaction.direction)
        .where(
            Interaction.ticket_id == ticket.id,
            Interaction.channel == Channel.EMAIL,
            Interaction.external_id.is_not(None),
        )
        .order_by(Interaction.occurred_at, Interaction.id)
    ).all()
    usable = [
        (external_id, direction)
        for external_id, direction in rows
        if not external_id.startswith("sha256:") and is_safe_message_id(external_id)
    ]
    inbound = [external_id for external_id, direction in usable if direction is Direction.INBOUND]
    return (inbound[-1] if inbound else None), list(dict.fromkeys(external_id for external_id, _ in usable))


def portal_ticket_url(*, ticket: Ticket, settings: Settings) -> str:
    """Where the customer follows the ticket in the portal."""
    return f"{settings.public_url.rstrip('/')}/portal/tickets/{ticket.number}"


def _acknowledgement_refusal(
    *,
    session: Session,
    ticket: Ticket,
    recipient: str,
    automated: bool,
    envelope_sender: str | None,
    now: datetime,
    settings: Settings,
    new_ticket: bool = False,
) -> str | None:
    if not settings.ack_enabled:
        return "acknowledgements are off"
    if automated:
        return "the message was automated"
    if envelope_sender is not None and envelope_sender.strip() in ("", "<>"):
        return "null envelope sender"
    if not recipient or "@" not in recipient:
        return "no sender address"
    if _AUTOMATED_LOCAL_PART.fullmatch(recipient.rsplit("@", 1)[0]):
        return "the sender is a machine address"
    if _is_our_mailbox(recipient, settings):
        return "the sender is one of our mailboxes"
    known = _known_recipient_facts(session=session, recipient=recipient, now=now) if new_ticket else None
    if known is not None:
        recent = known.earlier_acknowledgements + sum(
            _still_queued(session=session, outbound=outbound) for outbound in known.queued
        )
        return _refusal_for(undeliverable=known.undeliverable, acknowledged=False, recent=recent, settings=settings)
    # One round trip for the three facts about the recipient and the ticket. Flushed first only when an address
    # or an outbox row is pending, which could change the answer: what is usually pending here (the message's
    # own interaction, its ticket) goes out in the outbox's flush instead of one of its own.
    if any(isinstance(pending, (ContactEmail, OutboundEmail)) for pending in (*session.new, *session.dirty)):
        session.flush()
    acknowledgements = select(OutboundEmail.id).where(OutboundEmail.kind == OutboundKind.ACKNOWLEDGEMENT)
    with session.no_autoflush:
        facts = session.execute(
            select(
                select(ContactEmail.undeliverable_at).where(ContactEmail.address == recipient).scalar_subquery(),
                # A ticket opened in this transaction has no acknowledgement yet.
                false() if new_ticket else acknowledgements.where(OutboundEmail.ticket_id == ticket.id).exists(),
                select(func.count())
                .select_from(
                    acknowledgements.where(
                        OutboundEmail.recipient == recipient,
                        OutboundEmail.created_at > now - timedelta(minutes=settings.ack_window_minutes),
                    ).subquery()
                )
                .scalar_subquery(),
            )
        ).one()
    undeliverable, acknowledged, recent = facts
    return _refusal_for(
        undeliverable=undeliverable is not None, acknowledged=acknowledged, recent=recent, settings=settings
    )


def _refusal_for(*, undeliverable: bool, acknowledged: bool, recent: int, settings: Settings) -> str | None:
    if undeliverable:
        return "the sender's address is undeliverable"
    if acknowledged:
        return "the ticket was acknowledged already"
    if recent >= settings.ack_max_per_recipient:
        return "rate limit for the recipient reached"
    return None


def _is_our_mailbox(address: str, settings: Settings) -> bool:
    local, _, domain = address.partition("@")
    return address in settings.mailboxes or f"{local.partition('+')[0]}@{domain}" in settings.mailboxes


def _new_message_id(*, ticket: Ticket, mailbox: str, settings: Settings) -> str:
    return make_message_id(
        ticket_id=ticket.id,
        nonce=new_nonce(),
        secret=settings.secret_key.get_secret_value(),
        domain=mailbox.rsplit("@", 1)[1],
    )


def _reply_address(*, ticket: Ticket, mailbox: str, settings: Settings) -> str | None:
    try:
        return make_reply_address(
            mailbox=mailbox, ticket_id=ticket.id, secret=settings.secret_key.get_secret_value()
        )
    except ValueError:
        # A mailbox whose local part leaves no room for the tag: replies still thread by Message-ID or subject.
        return None


def _add_to_outbox(
    *,
    session: Session,
    kind: OutboundKind,
    ticket: Ticket | None,
    interaction: Interaction | None,
    mailbox: str,
    to: list[str],
    cc: list[str],
    message_id: str,
    raw: bytes,
    now: datetime,
    flush: bool = True,
) -> OutboundEmail:
    """Queue a composed message for sending after commit; with ``flush``, written at once (its id known)."""
    outbound = OutboundEmail(
        ticket=ticket,
        interaction=interaction,
        kind=kind,
        mailbox=mailbox,
        mail_from=mailbox,
        recipient=to[0],
        to_addresses=to,
        cc_addresses=cc,
        message_id=message_id.strip("<>"),
        raw=raw,
        state=OutboundState.QUEUED,
        attempts=0,
        next_attempt_at=now,
        enqueued_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(outbound)
    if flush:
        session.flush()
    enqueue_coalesced_after_commit(session, SEND_DUE_JOB, key=SEND_DUE_KEY)
    log.info(
        "queued outbound %s (%s) on ticket %s",
        outbound.id or outbound.message_id, kind.value, ticket.number if ticket else "-",
    )
    return outbound


# --- Delivery -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedEmail:
    """An outbox row claimed for one attempt: what to hand to the transport."""

    id: int
    raw: bytes
    mail_from: str
    rcpt_tos: list[str]
    attempt: int


def transition_outbound(*, outbound: OutboundEmail, to: OutboundState, now: datetime) -> bool:
    """Move ``outbound`` to state ``to`` when OUTBOUND_TRANSITIONS allows it; False (nothing changed) if not.

    The one place delivery states change: late or repeated events (a job after the message was sent, a second
    DSN) find a state they may not leave and change nothing.
    """
    if to not in OUTBOUND_TRANSITIONS[outbound.state]:
        log.info("outbound %s stays %s (not %s)", outbound.id, outbound.state.value, to.value)
        return False
    outbound.state = to
    outbound.updated_at = now
    if to in (OutboundState.SENT, OutboundState.BOUNCED, OutboundState.FAILED):
        outbound.next_attempt_at = None
    if to is OutboundState.SENT:
        outbound.sent_at = now
        outbound.last_error = None
    return True


def claim_due_outbound_emails(
    *, session: Session, now: datetime, limit: int, ids: Sequence[int] | None = None
) -> list[ClaimedEmail]:
    """Claim up to ``limit`` queued or deferred rows that are due (of ``ids`` only, when given), each for one
    attempt, the longest waiting first.

    The claim is one conditional UPDATE, so of two drains (or jobs) only one sends a row; it counts the attempt
    and pushes ``next_attempt_at`` out by SEND_LEASE. On PostgreSQL concurrent drains pass over rows another
    one is claiming (SKIP LOCKED). The caller commits before sending, so no transaction (and on SQLite no write
    lock) is held while we talk to the relay.
    """
    waiting = (
        OutboundEmail.state.in_([OutboundState.QUEUED, OutboundState.DEFERRED]),
        OutboundEmail.next_attempt_at <= now,
    )
    due = (
        select(OutboundEmail.id)
        .where(*waiting)
        .order_by(OutboundEmail.next_attempt_at, OutboundEmail.id)
        .limit(limit)
    )
    if ids is not None:
        due = due.where(OutboundEmail.id.in_(ids))
    if is_postgresql(session):
        due = due.with_for_update(skip_locked=True)
    claimed = session.execute(
        update(OutboundEmail)
        .where(OutboundEmail.id.in_(due.scalar_subquery()), *waiting)
        .values(attempts=OutboundEmail.attempts + 1, next_attempt_at=now + SEND_LEASE, updated_at=now)
        .returning(
            OutboundEmail.id,
            OutboundEmail.raw,
            OutboundEmail.mail_from,
            OutboundEmail.to_addresses,
            OutboundEmail.cc_addresses,
            OutboundEmail.attempts,
        )
        .execution_options(synchronize_session="fetch")
    )
    return sorted(
        (
            ClaimedEmail(
                id=row.id,
                raw=row.raw,
                mail_from=row.mail_from,
                rcpt_tos=list(dict.fromkeys([*row.to_addresses, *row.cc_addresses])),
                attempt=row.attempts,
            )
            for row in claimed
        ),
        key=lambda email: email.id,
    )


def claim_outbound_email(*, session: Session, outbound_id: int, now: datetime) -> ClaimedEmail | None:
    """Claim the row ``outbound_id`` as ``claim_due_outbound_emails`` does; None when it is not due or not
    waiting."""
    claimed = claim_due_outbound_emails(session=session, now=now, limit=1, ids=[outbound_id])
    return claimed[0] if claimed else None


def release_outbound_claims(*, session: Session, ids: Sequence[int], now: datetime) -> None:
    """Give back claimed rows that were not attempted after all (their drain ran out of time): due again at
    ``now``, and the attempt their claim counted uncounted."""
    session.execute(
        update(OutboundEmail)
        .where(
            OutboundEmail.id.in_(ids),
            OutboundEmail.state.in_([OutboundState.QUEUED, OutboundState.DEFERRED]),
            OutboundEmail.attempts > 0,
        )
        .values(attempts=OutboundEmail.attempts - 1, next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )


def record_delivery_attempt(
    *, session: Session, outbound_id: int, error: DeliveryError | None, now: datetime, settings: Settings
) -> OutboundEmail | None:
    """Record how the claimed attempt went: sent, deferred (with back-off) or failed.

    A permanent refusal, or a transient one after MAX_ATTEMPTS attempts, fails the message for good; a failed
    reply reopens its ticket and notifies the assignee.
    """
    outbound = session.get(OutboundEmail, outbound_id, populate_existing=True)
    if outbound is None:
        return None
    if error is None:
        if transition_outbound(outbound=outbound, to=OutboundState.SENT, now=now):
            log.info("outbound %s sent on attempt %d", outbound.id, outbound.attempts)
        return outbound
    reason = _error_text(error)
    if isinstance(error, PermanentDeliveryError) or outbound.attempts >= MAX_ATTEMPTS:
        if transition_outbound(outbound=outbound, to=OutboundState.FAILED, now=now):
            outbound.last_error = reason
            log.warning("outbound %s failed after %d attempt(s): %s", outbound.id, outbound.attempts, reason)
            _after_final_failure(
                session=session, outbound=outbound, reason=reason, now=now, settings=settings
            )
        return outbound
    if transition_outbound(outbound=outbound, to=OutboundState.DEFERRED, now=now):
        delay = RETRY_MINUTES[min(outbound.attempts, len(RETRY_MINUTES)) - 1]
        outbound.next_attempt_at = now + timedelta(minutes=delay)
        outbound.last_error = reason
        log.info("outbound %s deferred for %d min after attempt %d", outbound.id, delay, outbound.attempts)
    return outbound


def find_due_outbound(*, session: Session, now: datetime, grace: timedelta, limit: int = 500) -> list[int]:
    """Hand due rows to the queue again (on commit): deferred ones whose wait is over, and any whose job was
    lost (not handed out within ``grace``); returns their ids."""
    ids = list(
        session.scalars(
            select(OutboundEmail.id)
            .where(
                OutboundEmail.state.in_([OutboundState.QUEUED, OutboundState.DEFERRED]),
                OutboundEmail.next_attempt_at <= now,
                or_(OutboundEmail.enqueued_at.is_(None), OutboundEmail.enqueued_at <= now - grace),
            )
            .order_by(OutboundEmail.next_attempt_at, OutboundEmail.id)
            .limit(limit)
        )
    )
    if ids:
        session.execute(
            update(OutboundEmail)
            .where(OutboundEmail.id.in_(ids))
            .values(enqueued_at=now)
            .execution_options(synchronize_session="fetch")
        )
        # A fresh drain, not coalesced: the waiting mark may be that of the very job that was lost.
        enqueue_after_commit(session, SEND_DUE_JOB)
    return ids


def mark_bounced(
    *,
    session: Session,
    message_id: str,
    permanent: bool,
    recipients: Sequence[str],
    now: datetime,
    settings: Settings,
    diagnostic: str = "",
) -> OutboundEmail | None:
    """Record a delivery status notification about our message ``message_id`` (with or without ``<>``).

    Permanent: the named recipients' contact addresses become undeliverable, and the message is bounced when
    its primary recipient is among them (or none are named); a reply then reopens its ticket and notifies the
    assignee. Transient (a "delayed" DSN): only ``last_error`` notes it, the relay is still trying. Returns
    the outbox row, or None when the Message-ID is not one of ours.
    """
    outbound = session.scalar(
        select(OutboundEmail).where(OutboundEmail.message_id == message_id.strip().strip("<>"))
    )
    if outbound is None:
        return None
    detail = " ".join("".join(c if c.isprintable() else " " for c in diagnostic).split())
    if not permanent:
        if outbound.state in (OutboundState.QUEUED, OutboundState.DEFERRED, OutboundState.SENT):
            outbound.last_error = f"delayed: {detail}"[:MAX_ERROR_LENGTH] if detail else "delayed"
            outbound.updated_at = now
        return outbound
    ours = {*outbound.to_addresses, *outbound.cc_addresses}
    bounced = [
        address for address in dict.fromkeys(item.strip().lower() for item in recipients) if address in ours
    ]
    if bounced:
        known = session.info.get(_ACK_FACTS_KEY)
        if known is not None:
            for address in bounced:
                known.recipients.pop(address, None)  # asked about again, after this change
        for address in session.scalars(
            select(ContactEmail).where(
                ContactEmail.address.in_(bounced), ContactEmail.undeliverable_at.is_(None)
            )
        ):
            address.undeliverable_at = now
    if recipients and outbound.recipient not in bounced:
        return outbound
    if transition_outbound(outbound=outbound, to=OutboundState.BOUNCED, now=now):
        reason = f"bounced: {detail}"[:MAX_ERROR_LENGTH] if detail else "bounced"
        outbound.last_error = reason
        log.warning("outbound %s bounced", outbound.id)
        _after_final_failure(session=session, outbound=outbound, reason=reason, now=now, settings=settings)
    return outbound


def _after_final_failure(
    *, session: Session, outbound: OutboundEmail, reason: str, now: datetime, settings: Settings
) -> None:
    """A reply that will not arrive: the ticket is the agents' again, with a note; its assignee is told."""
    ticket = outbound.ticket
    if outbound.kind is not OutboundKind.REPLY or ticket is None:
        return
    ticket.status = TicketStatus.OPEN
    ticket.resolved_at = None
    ticket.closed_at = None
    ticket.archived_at = None
    ticket.updated_at = max(ticket.updated_at, now)
    # Reopened: clocks paused while we waited on the customer run again.
    sync_clocks_with_status(session=session, ticket=ticket, now=now)
    recipients = ", ".join([*outbound.to_addresses, *outbound.cc_addresses])
    sent_on = outbound.created_at.strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"The reply of {sent_on} could not be delivered to {recipients}: {reason}.\nThe ticket was reopened."
    )
    note = add_interaction(
        session=session,
        ticket=ticket,
        contact=ticket.contact,
        channel=Channel.NOTE,
        direction=Direction.INTERNAL,
        subject="Reply not delivered",
        text=text,
        author_name=SYSTEM_AUTHOR,
        occurred_at=now,
        now=now,
    )
    session.flush()
    assignee = ticket.assignee
    if assignee is not None and assignee.is_active:
        try:
            queue_agent_notification(
                session=session,
                ticket=ticket,
                agent=assignee,
                subject=f"Reply not delivered: {ticket.subject}",
                text=f"{text}\n\n{_console_url(ticket=ticket, settings=settings)}\n",
                now=now,
                settings=settings,
                interaction=note,
            )
        except InvalidInputError:
            # The note is on the ticket either way; an unusable agent address must not undo it.
            log.warning("could not notify the assignee of ticket %s", ticket.number)


def _console_url(*, ticket: Ticket, settings: Settings) -> str:
    return f"{settings.public_url.rstrip('/')}/console/tickets/{ticket.number}"


def _error_text(error: DeliveryError) -> str:
    text = " ".join("".join(c if c.isprintable() else " " for c in str(error)).split())
    return f"{type(error).__name__}: {text}"[:MAX_ERROR_LENGTH]
