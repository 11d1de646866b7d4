"""Tables of the domain: organisations, contacts, agents, queues, tickets and the interaction timeline."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from centrala.core.db import Base, UTCDateTime

TICKET_NUMBER_OFFSET = 1000


def str_enum(enum_class: type[enum.Enum]) -> Enum:
    """An enum column stored as its values in a VARCHAR, the same on SQLite and PostgreSQL."""
    return Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class TicketStatus(enum.StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class TicketPriority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Channel(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    PORTAL = "portal"
    NOTE = "note"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class AgentRole(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class OrganizationKind(enum.StrEnum):
    CUSTOMER = "customer"
    PARTNER = "partner"


class OutboundKind(enum.StrEnum):
    """Why we send an e-mail: an agent's reply, the acknowledgement of a new ticket, a note to an agent."""

    REPLY = "reply"
    ACKNOWLEDGEMENT = "acknowledgement"
    NOTIFICATION = "notification"


class OutboundState(enum.StrEnum):
    """Delivery state of an outbound e-mail; ``OUTBOUND_TRANSITIONS`` lists every change allowed."""

    QUEUED = "queued"
    DEFERRED = "deferred"
    SENT = "sent"
    BOUNCED = "bounced"
    FAILED = "failed"


# queued/deferred: waiting for an attempt; deferred -> deferred is a further transient failure. A bounce
# (a DSN naming our Message-ID) may arrive for a message still waiting when the relay accepted it but we never
# recorded that (a worker killed in between), and after it was sent. sent changes only to bounced;
# bounced and failed are terminal, so a late or repeated event cannot resurrect a message.
OUTBOUND_TRANSITIONS: dict[OutboundState, frozenset[OutboundState]] = {
    OutboundState.QUEUED: frozenset(
        {OutboundState.SENT, OutboundState.DEFERRED, OutboundState.FAILED, OutboundState.BOUNCED}
    ),
    OutboundState.DEFERRED: frozenset(
        {OutboundState.SENT, OutboundState.DEFERRED, OutboundState.FAILED, OutboundState.BOUNCED}
    ),
    OutboundState.SENT: frozenset({OutboundState.BOUNCED}),
    OutboundState.BOUNCED: frozenset(),
    OutboundState.FAILED: frozenset(),
}


class Organization(Base):
    __tablename__ = "organization"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[OrganizationKind] = mapped_column(str_enum(OrganizationKind), default=OrganizationKind.CUSTOMER)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    domains: Mapped[list[OrganizationDomain]] = relationship(
        back_populates="organization", cascade="all, delete-orphan"
    )
    contacts: Mapped[list[Contact]] = relationship(back_populates="organization")


class OrganizationDomain(Base):
    """An e-mail domain whose senders belong to the organisation."""

    __tablename__ = "organization_domain"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)

    organization: Mapped[Organization] = relationship(back_populates="domains")


class Contact(Base):
    """A person who contacts us, reachable at several e-mail addresses and phone numbers."""

    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organization.id", ondelete="SET NULL"), index=True
    )
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    organization: Mapped[Organization | None] = relationship(back_populates="contacts")
    emails: Mapped[list[ContactEmail]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactEmail.id"
    )
    phones: Mapped[list[ContactPhone]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactPhone.id"
    )


class ContactEmail(Base):
    """One e-mail address of a contact, stored normalised (lower-case); an address belongs to one contact."""

    __tablename__ = "contact_email"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    # Set when mail to the address bounced for good; replies go to another address of the contact.
    undeliverable_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    contact: Mapped[Contact] = relationship(back_populates="emails")


class ContactPhone(Base):
    """One phone number of a contact in E.164; a shared line may belong to several contacts."""

    __tablename__ = "contact_phone"
    __table_args__ = (UniqueConstraint("contact_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(20), index=True)

    contact: Mapped[Contact] = relationship(back_populates="phones")


class Agent(Base):
    """A person who works tickets; authenticates to the API with a bearer token stored only as a hash."""

    __tablename__ = "agent"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[AgentRole] = mapped_column(str_enum(AgentRole), default=AgentRole.AGENT)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Queue(Base):
    """A queue of tickets worked by a team, e.g. "Support" or "Complaints"."""

    __tablename__ = "queue"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    email_address: Mapped[str | None] = mapped_column(String(320), unique=True)


class Ticket(Base):
    """A case worked against service targets; shown to people as ``T-<number>``."""

    __tablename__ = "ticket"
    __table_args__ = (Index(None, "status", "updated_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[TicketStatus] = mapped_column(str_enum(TicketStatus), default=TicketStatus.NEW)
    priority: Mapped[TicketPriority] = mapped_column(str_enum(TicketPriority), default=TicketPriority.NORMAL)
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    mailbox: Mapped[str | None] = mapped_column(String(320))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"), index=True)
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    contact: Mapped[Contact] = relationship()
    assignee: Mapped[Agent | None] = relationship()
    queue: Mapped[Queue | None] = relationship()
    interactions: Mapped[list[Interaction]] = relationship(
        back_populates="ticket", order_by="(Interaction.occurred_at, Interaction.id)"
    )

    @property
    def number(self) -> str:
        """The ticket's public number, e.g. ``T-1042``."""
        return format_ticket_number(self.id)


def format_ticket_number(ticket_id: int) -> str:
    return f"T-{ticket_id + TICKET_NUMBER_OFFSET}"


def parse_ticket_number(number: str) -> int | None:
    """The ticket id behind ``T-1042`` (or ``1042``), or None when it is not a ticket number."""
    digits = number.strip().upper().removeprefix("T-")
    if not digits.isdigit() or len(digits) > 12:
        return None
    ticket_id = int(digits) - TICKET_NUMBER_OFFSET
    return ticket_id if ticket_id > 0 else None


class Interaction(Base):
    """One entry of the timeline: an e-mail, call, portal reply or note, on a contact and usually a ticket."""

    __tablename__ = "interaction"
    __table_args__ = (
        UniqueConstraint("channel", "external_id"),
        Index(None, "ticket_id", "occurred_at"),
        Index(None, "contact_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    direction: Mapped[Direction] = mapped_column(str_enum(Direction))
    # The provider's key: the Message-ID for e-mail (sha256 of the raw bytes when it has none), the CallSid for calls.
    external_id: Mapped[str | None] = mapped_column(String(998))
    author_name: Mapped[str] = mapped_column(String(200), default="")
    author_address: Mapped[str | None] = mapped_column(String(320))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(String(500), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text)
    thread_reason: Mapped[str] = mapped_column(String(40), default="")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    ticket: Mapped[Ticket | None] = relationship(back_populates="interactions")
    contact: Mapped[Contact] = relationship()
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="interaction", cascade="all, delete-orphan", order_by="Attachment.id"
    )
    # The outbox row of an outbound e-mail; loaded with the interactions (one query for all of them).
    outbound_email: Mapped[OutboundEmail | None] = relationship(back_populates="interaction", lazy="selectin")

    @property
    def delivery_state(self) -> OutboundState | None:
        """Where the e-mail this interaction sent is on its way; None when it sent none."""
        return self.outbound_email.state if self.outbound_email is not None else None


class Attachment(Base):
    """A file that came with an interaction; its bytes live in the blob store under ``sha256``."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    interaction_id: Mapped[int] = mapped_column(ForeignKey("interaction.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str | None] = mapped_column(String(255))
    is_inline: Mapped[bool] = mapped_column(default=False)

    interaction: Mapped[Interaction] = relationship(back_populates="attachments")


class OutboundEmail(Base):
    """The outbox: one composed e-mail, its bytes fixed when queued so that every attempt sends the same.

    A job sends it after the queuing transaction commits; transient failures wait until ``next_attempt_at``,
    when the scheduler's sweep hands the row to a job again.
    """

    __tablename__ = "outbound_email"
    __table_args__ = (
        Index(None, "state", "next_attempt_at"),
        # The acknowledgement rate limit counts recent mails per recipient and kind.
        Index(None, "recipient", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"), index=True)
    interaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("interaction.id", ondelete="SET NULL"), unique=True
    )
    kind: Mapped[OutboundKind] = mapped_column(str_enum(OutboundKind))
    mailbox: Mapped[str] = mapped_column(String(320))
    # The envelope sender (RFC 5321 MAIL FROM): our mailbox, so that bounces come back to us.
    mail_from: Mapped[str] = mapped_column(String(320))
    # The first To address, normalised, for the rate limit; all recipients are in to_addresses/cc_addresses.
    recipient: Mapped[str] = mapped_column(String(320))
    to_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Without angle brackets, like the external_id of interactions.
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    state: Mapped[OutboundState] = mapped_column(str_enum(OutboundState), default=OutboundState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the row is next due for an attempt; None once it is sent, bounced or failed.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When a job for the row was last handed to the queue; the sweep hands out another only well after that.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The relay's reply or the kind of error; never credentials or message content.
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    ticket: Mapped[Ticket | None] = relationship()
    interaction: Mapped[Interaction | None] = relationship(back_populates="outbound_email")
