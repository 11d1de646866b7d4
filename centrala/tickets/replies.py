"""Agent replies: an outbound e-mail recorded on the ticket's timeline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from centrala.core.errors import InvalidInputError
from centrala.core.text import without_nul
from centrala.mail import compose
from centrala.tickets.models import Agent, Channel, Direction, Interaction, Ticket, TicketStatus

MAX_REPLY_TEXT = 100_000
MAX_REPLY_HTML = 1_000_000
MAX_SUBJECT_LENGTH = 500


def reply_subject(ticket: Ticket) -> str:
    """``Re: <subject> [#T-1042]``: the tag threads the customer's answer back to the ticket.

    Whitespace (CR/LF included) is collapsed, because the subject becomes a header we generate
    (CVE-2024-6923), earlier reply prefixes and ticket tags are dropped, and the subject is shortened so that
    the tag always survives.
    """
    return compose.reply_subject(ticket.subject, ticket.number, max_length=MAX_SUBJECT_LENGTH)


def record_agent_reply(
    *,
    session: Session,
    ticket: Ticket,
    agent: Agent,
    text: str,
    html: str | None,
    now: datetime,
    external_id: str | None = None,
) -> Interaction:
    """Record an agent's e-mail reply on the ticket and leave the ticket waiting on the customer.

    This records the reply on the timeline only; delivering it is the job of the outbound mail outbox
    (``tickets.outbox.queue_reply``), which passes the reply's Message-ID (without angle brackets) as
    ``external_id``. A new or open ticket becomes pending; a pending, resolved or closed one keeps its status.

    Raises:
        InvalidInputError: the text is blank or either body is too long.
    """
    text, html = without_nul(text), without_nul(html)  # PostgreSQL refuses NUL in text
    if not text.strip():
        raise InvalidInputError("the reply text is empty")
    if len(text) > MAX_REPLY_TEXT:
        raise InvalidInputError(f"the reply text is longer than {MAX_REPLY_TEXT} characters")
    if html is not None and len(html) > MAX_REPLY_HTML:
        raise InvalidInputError(f"the reply HTML is longer than {MAX_REPLY_HTML} characters")
    interaction = Interaction(
        ticket=ticket,
        contact_id=ticket.contact_id,
        channel=Channel.EMAIL,
        direction=Direction.OUTBOUND,
        external_id=external_id,
        agent_id=agent.id,
        author_name=agent.name or agent.email,
        author_address=agent.email,
        subject=reply_subject(ticket),
        text=text,
        html=html,
        occurred_at=now,
        created_at=now,
    )
    session.add(interaction)
    if ticket.status in (TicketStatus.NEW, TicketStatus.OPEN):
        ticket.status = TicketStatus.PENDING
    ticket.updated_at = max(ticket.updated_at, now)
    session.flush()
    return interaction
