"""Tables of the domain: organisations, contacts, agents, queues, tickets and the interaction timeline."""

from __future__ import annotations

import enum
import json
from datetime import date as dt_date
from datetime import datetime
from datetime import time as dt_time
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from centrala.core.db import Base, UTCDateTime

if TYPE_CHECKING:
    from centrala.tickets.sla import BusinessCalendar

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
    PENDING = "pending"  # waiting on the customer
    THIRD_PARTY = "third_party"  # waiting on a third party (a supplier, a carrier, another team)
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


class AgentAvailability(enum.StrEnum):
    """Whether an agent takes calls now: only ``available`` agents are rung."""

    AVAILABLE = "available"
    BUSY = "busy"
    OFFLINE = "offline"


class CaseType(enum.StrEnum):
    """What a customer says a case is about when they open it in the portal."""

    QUESTION = "question"
    COMPLAINT = "complaint"
    RETURN = "return"
    SERVICE = "service"


class OrganizationKind(enum.StrEnum):
    CUSTOMER = "customer"
    PARTNER = "partner"


class OutboundKind(enum.StrEnum):
    """Why we send an e-mail: an agent's reply, the acknowledgement of a new ticket, a note to an agent."""

    REPLY = "reply"
    ACKNOWLEDGEMENT = "acknowledgement"
    NOTIFICATION = "notification"
    # The portal's sign-in link and the request to rate a resolved ticket.
    SIGN_IN = "sign_in"
    SURVEY = "survey"


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
    # Created for an unknown caller from the number alone, to be completed (or merged) by an agent.
    is_provisional: Mapped[bool] = mapped_column(default=False)
    # A customer segment ("vip", "b2b", "b2c", "partner", or any word the team uses): SLA policies may match it.
    segment: Mapped[str | None] = mapped_column(String(32), index=True)
    # Sees every case of their organisation in the portal, not only their own.
    is_org_manager: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Set when an agent merged this contact into another; its records moved there (``ContactMerge`` undoes it).
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    # Values of the contact's custom fields (``CustomField`` with entity "contact"), by key.
    custom_fields: Mapped[dict[str, object]] = mapped_column(JSON, default=dict, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    organization: Mapped[Organization | None] = relationship(back_populates="contacts")
    emails: Mapped[list[ContactEmail]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactEmail.id"
    )
    phones: Mapped[list[ContactPhone]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", order_by="ContactPhone.id"
    )


class ContactMerge(Base):
    """The audit entry of a merge of two contacts: who, when, and exactly what moved, so it can be undone."""

    __tablename__ = "contact_merge"

    id: Mapped[int] = mapped_column(primary_key=True)
    kept_contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    merged_contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"))
    # Ids per kind of row moved ("emails", "phones", "tickets", "interactions", "calls") and the kept contact's
    # fields filled in from the merged one ("filled": {field: previous value}).
    moved: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


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
    # argon2id hash of the console password; None: the agent cannot sign in to the console (API token only).
    password_hash: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Telephony: rung on their phone (E.164) when set, else in the browser as Twilio client ``agent-<id>``.
    phone_number: Mapped[str | None] = mapped_column(String(20), index=True)
    availability: Mapped[AgentAvailability] = mapped_column(
        str_enum(AgentAvailability), default=AgentAvailability.OFFLINE
    )
    queues: Mapped[list[Queue]] = relationship(secondary="agent_queue", order_by="Queue.name")

    @property
    def client_identity(self) -> str:
        """The agent's Twilio Voice client identity (browser calls)."""
        return f"agent-{self.id}"


class AgentSession(Base):
    """A console sign-in: the cookie holds a random token, the table only its SHA-256."""

    __tablename__ = "agent_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    user_agent: Mapped[str] = mapped_column(String(200), default="")

    agent: Mapped[Agent] = relationship()


class AgentQueue(Base):
    """An agent's membership of a queue: whose calls ring them."""

    __tablename__ = "agent_queue"

    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"), primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id", ondelete="CASCADE"), primary_key=True, index=True)


class Team(Base):
    """A team of agents working some queues: an agent sees and works the tickets of their teams' queues, and a
    supervisor's reports cover their teams' queues."""

    __tablename__ = "team"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    members: Mapped[list[Agent]] = relationship(secondary="team_member", order_by="Agent.name")
    queues: Mapped[list[Queue]] = relationship(secondary="team_queue", order_by="Queue.name")


class TeamMember(Base):
    __tablename__ = "team_member"

    team_id: Mapped[int] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"), primary_key=True, index=True)


class TeamQueue(Base):
    __tablename__ = "team_queue"

    team_id: Mapped[int] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id", ondelete="CASCADE"), primary_key=True, index=True)


class ApiToken(Base):
    """A named API token of an agent, made and revoked in the console; stored only as its sha256."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    agent: Mapped[Agent] = relationship()


class Queue(Base):
    """A queue of tickets worked by a team, e.g. "Support" or "Complaints"."""

    __tablename__ = "queue"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    email_address: Mapped[str | None] = mapped_column(String(320), unique=True)
    # The team lead told of the queue's SLA escalations (policy action "notify_team_lead").
    lead_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"))


class Ticket(Base):
    """A case worked against service targets; shown to people as ``T-<number>``."""

    __tablename__ = "ticket"
    __table_args__ = (
        Index(None, "status", "updated_at"),
        # A customer's cases, most recently updated first: the portal's list is a range scan of this index.
        Index(None, "contact_id", "updated_at", "id"),
        # The console's lists, newest first: every ticket (filtered as it is read), one queue, one agent's
        # open work (bench/console.py measures them).
        Index(None, "updated_at", "id"),
        Index(None, "queue_id", "updated_at", "id"),
        Index(None, "assignee_id", "status", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[TicketStatus] = mapped_column(str_enum(TicketStatus), default=TicketStatus.NEW)
    priority: Mapped[TicketPriority] = mapped_column(str_enum(TicketPriority), default=TicketPriority.NORMAL)
    channel: Mapped[Channel] = mapped_column(str_enum(Channel))
    mailbox: Mapped[str | None] = mapped_column(String(320))
    # Indexed by the composite indexes above, which lead with these columns.
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"))
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A follow-up that arrived after the reopen window of a closed ticket opens a new ticket linked here.
    follows_up_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="SET NULL"))
    # What the case is about: said by the customer opening it in the portal, or set by an agent.
    case_type: Mapped[CaseType | None] = mapped_column(str_enum(CaseType))
    # Values of the ticket's custom fields (``CustomField`` with entity "ticket"), by key.
    custom_fields: Mapped[dict[str, object]] = mapped_column(JSON, default=dict, server_default="{}")
    # Set when an agent merged this ticket into another: its timeline moved there and it was closed.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="SET NULL"))
    # Set by the retention sweep on a ticket closed long ago: kept and found by search, left out of work lists.
    # Cleared when the ticket is reopened.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

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


class TicketTag(Base):
    """A free-form label on a ticket ("invoice", "vip-callback"), stored lower-case."""

    __tablename__ = "ticket_tag"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(50), primary_key=True, index=True)


Ticket.tag_rows = relationship(TicketTag, cascade="all, delete-orphan", order_by=TicketTag.tag)


class CustomFieldKind(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    CHOICE = "choice"


class CustomField(Base):
    """A field an admin added to tickets or contacts; values live in the entity's ``custom_fields`` by key."""

    __tablename__ = "custom_field"
    __table_args__ = (UniqueConstraint("entity", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entity: Mapped[str] = mapped_column(String(16))  # "ticket" or "contact"
    key: Mapped[str] = mapped_column(String(50))
    label: Mapped[str] = mapped_column(String(100))
    kind: Mapped[CustomFieldKind] = mapped_column(str_enum(CustomFieldKind), default=CustomFieldKind.TEXT)
    choices: Mapped[list[str]] = mapped_column(JSON, default=list)
    position: Mapped[int] = mapped_column(Integer, default=0)


class ReplyTemplate(Base):
    """A canned reply with variables ({{ contact.first_name }}, {{ ticket.number }}, {{ agent.name }}, ...);
    as a macro it also sets the ticket's status or priority and adds tags when used."""

    __tablename__ = "reply_template"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    body: Mapped[str] = mapped_column(Text, default="")
    set_status: Mapped[TicketStatus | None] = mapped_column(str_enum(TicketStatus))
    set_priority: Mapped[TicketPriority | None] = mapped_column(str_enum(TicketPriority))
    add_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


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
    # What the person wrote, quoted history and signature stripped; ``full_text`` keeps the whole body.
    text: Mapped[str] = mapped_column(Text, default="")
    full_text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    thread_reason: Mapped[str] = mapped_column(String(40), default="")
    # normal, auto_reply, bounce, list or complaint: automated mail never reopens or acknowledges.
    classification: Mapped[str] = mapped_column(String(16), default="normal")
    cc_addresses: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Set when something about the entry needs a person's eye, e.g. a Message-ID reused by another sender.
    flag: Mapped[str | None] = mapped_column(String(200))
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


# --- SLA: business calendars, policies, clocks and their segment ledger ---------------------------------------


class SlaMetric(enum.StrEnum):
    """What a clock measures: time to the first agent response, to the next one after a customer's message,
    or to resolution."""

    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class ClockState(enum.StrEnum):
    """Where an SLA clock is; ``CLOCK_TRANSITIONS`` lists every change allowed.

    A breach is not a state: it is the fact ``breached_at`` (due passed while the clock ran), and a breached
    clock still pauses, resumes and is finally met (late) or cancelled. met and cancelled are terminal.
    """

    RUNNING = "running"
    PAUSED = "paused"
    MET = "met"
    # Stopped without being met: e.g. a response clock of a ticket resolved without needing an answer.
    CANCELLED = "cancelled"


CLOCK_TRANSITIONS: dict[ClockState, frozenset[ClockState]] = {
    ClockState.RUNNING: frozenset({ClockState.PAUSED, ClockState.MET, ClockState.CANCELLED}),
    ClockState.PAUSED: frozenset({ClockState.RUNNING, ClockState.MET, ClockState.CANCELLED}),
    ClockState.MET: frozenset(),
    ClockState.CANCELLED: frozenset(),
}


class SegmentKind(enum.StrEnum):
    """One stretch of a clock's life: counting, paused (with its cause), or outside business hours."""

    RUNNING = "running"
    PAUSED = "paused"
    OUTSIDE_HOURS = "outside_hours"


class BusinessCalendarRow(Base):
    """A stored business calendar: ``weekly_hours`` maps ``"0"``-``"6"`` (Monday 0) to ``[["09:00", "17:00"]]``,
    ``extra_holidays`` lists ISO dates."""

    __tablename__ = "business_calendar"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    weekly_hours: Mapped[dict[str, list[list[str]]]] = mapped_column(JSON, default=dict)
    holidays_country: Mapped[str | None] = mapped_column(String(8))
    holidays_subdiv: Mapped[str | None] = mapped_column(String(16))
    extra_holidays: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def to_calendar(self) -> BusinessCalendar:
        """The pure calendar value the SLA math works with.

        Built once per distinct content and shared (calendars are immutable values): building one checks the
        time zone and loads the country's holidays, which every new ticket's clocks and every call's open-hours
        check would otherwise pay again.
        """
        return _calendar_value(
            self.timezone,
            json.dumps(self.weekly_hours, sort_keys=True),
            self.holidays_country,
            self.holidays_subdiv,
            tuple(self.extra_holidays),
        )


@lru_cache(maxsize=256)
def _calendar_value(
    timezone: str,
    weekly_hours_json: str,
    holidays_country: str | None,
    holidays_subdiv: str | None,
    extra_holidays: tuple[str, ...],
) -> BusinessCalendar:
    from centrala.tickets.sla import BusinessCalendar

    def wall(text: str) -> dt_time:
        return dt_time(0) if text in ("24:00", "24:00:00") else dt_time.fromisoformat(text)

    return BusinessCalendar(
        timezone,
        {
            int(day): [(wall(start), wall(end)) for start, end in spans]
            for day, spans in json.loads(weekly_hours_json).items()
        },
        holidays_country=holidays_country,
        holidays_subdiv=holidays_subdiv,
        extra_holidays=[dt_date.fromisoformat(day) for day in extra_holidays],
    )


class SlaPolicy(Base):
    """Service targets for the tickets matching its conditions (None matches anything).

    The matching policy with the lowest ``precedence`` applies, else the default one. ``targets`` maps a
    priority (or ``"default"``) to ``{metric: business minutes}``; a metric left out gets no clock.
    ``escalations`` is a list of ``{"on": "warning"|"breach", "action": "notify_assignee"|"notify_team_lead"|
    "notify_queue"|"notify_address"|"raise_priority"|"reassign", "queue_id": int, "address": str}``.
    """

    __tablename__ = "sla_policy"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    precedence: Mapped[int] = mapped_column(Integer, default=100)
    is_default: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id", ondelete="CASCADE"))
    priority: Mapped[TicketPriority | None] = mapped_column(str_enum(TicketPriority))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    channel: Mapped[Channel | None] = mapped_column(str_enum(Channel))
    segment: Mapped[str | None] = mapped_column(String(32))
    # None: round the clock in UTC.
    calendar_id: Mapped[int | None] = mapped_column(ForeignKey("business_calendar.id", ondelete="RESTRICT"))
    targets: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON, default=dict)
    warn_before_minutes: Mapped[int] = mapped_column(Integer, default=15)
    escalations: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)
    # Whether a call an agent answered (or a call-back the customer picked up) meets a response target.
    calls_count_as_response: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    calendar: Mapped[BusinessCalendarRow | None] = relationship()


class SlaClock(Base):
    """One measured target of one ticket; ``cycle`` counts next-response restarts (0 for the others).

    While running, ``running_since`` starts the current counting stretch and ``achieved_minutes`` holds the
    business minutes of the stretches before it; paused time never counts. ``next_check_at`` is the earlier
    of the pending warning and breach (None when neither is pending): the sweep's index.
    """

    __tablename__ = "sla_clock"
    __table_args__ = (
        UniqueConstraint("ticket_id", "metric", "cycle"),
        Index(None, "next_check_at"),
        # Running clocks nearest due first, in a total order (the console's "breaching soon" reads it until its
        # list is full; PostgreSQL would otherwise sort every running clock to break ties by id).
        Index(None, "state", "due_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"), index=True)
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("sla_policy.id", ondelete="SET NULL"))
    metric: Mapped[SlaMetric] = mapped_column(str_enum(SlaMetric))
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[ClockState] = mapped_column(str_enum(ClockState), default=ClockState.RUNNING)
    target_minutes: Mapped[int] = mapped_column(Integer)
    warn_before_minutes: Mapped[int] = mapped_column(Integer, default=0)
    achieved_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    running_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    met_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    ticket: Mapped[Ticket] = relationship()
    policy: Mapped[SlaPolicy | None] = relationship()
    segments: Mapped[list[SlaSegment]] = relationship(
        back_populates="clock", cascade="all, delete-orphan", order_by="(SlaSegment.started_at, SlaSegment.id)"
    )


class SlaSegment(Base):
    """One stretch of a clock's ledger; ``ended_at`` is None for the stretch in progress."""

    __tablename__ = "sla_segment"

    id: Mapped[int] = mapped_column(primary_key=True)
    clock_id: Mapped[int] = mapped_column(ForeignKey("sla_clock.id", ondelete="CASCADE"), index=True)
    kind: Mapped[SegmentKind] = mapped_column(str_enum(SegmentKind))
    cause: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    clock: Mapped[SlaClock] = relationship(back_populates="segments")


# The ticket's clocks in order, for reading (clocks are written through tickets.sla_clocks only).
Ticket.sla_clocks = relationship(SlaClock, viewonly=True, order_by=SlaClock.id)


class CsatSurvey(Base):
    """The customer's rating of one resolution of a ticket: asked when it is resolved, answered at most once.

    ``cycle`` counts the ticket's resolutions (1 for the first); a ticket reopened and resolved again is asked
    again, under the next cycle.
    """

    __tablename__ = "csat_survey"
    __table_args__ = (UniqueConstraint("ticket_id", "cycle"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    cycle: Mapped[int] = mapped_column(Integer)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # 1 (very unhappy) to 5 (very happy); None until answered.
    rating: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    answered_by_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))

    ticket: Mapped[Ticket] = relationship()


Ticket.csat_surveys = relationship(CsatSurvey, viewonly=True, order_by=CsatSurvey.cycle)
