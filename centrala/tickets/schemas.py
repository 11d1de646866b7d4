"""The JSON shapes of the API: ``...Read`` for what we answer, ``...Create`` for what we accept."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, computed_field

from centrala.core import clock as clock_module
from centrala.core.ids import BodyId
from centrala.tickets.models import (
    CaseType,
    Channel,
    ClockState,
    Contact,
    Direction,
    Interaction,
    OutboundState,
    SlaClock,
    SlaMetric,
    Ticket,
    TicketPriority,
    TicketStatus,
    format_ticket_number,
)
from centrala.tickets.replies import MAX_REPLY_HTML, MAX_REPLY_TEXT
from centrala.tickets.sla_clocks import remaining_business_minutes


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AttachmentRead(ReadModel):
    id: int
    filename: str
    content_type: str
    size: int


class InteractionRead(ReadModel):
    id: int
    ticket_id: int | None
    channel: Channel
    direction: Direction
    author_name: str
    author_address: str | None
    agent_id: int | None
    subject: str
    text: str
    html: str | None
    thread_reason: str
    occurred_at: datetime
    external_id: str | None
    attachments: list[AttachmentRead]
    delivery_state: OutboundState | None = Field(
        default=None, description="For an e-mail we send: queued, sent, deferred, bounced or failed"
    )


class TimelineEntryRead(InteractionRead):
    """An interaction on a contact's timeline, with the number of the ticket it belongs to."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ticket_number(self) -> str | None:
        return format_ticket_number(self.ticket_id) if self.ticket_id is not None else None


class ContactBrief(BaseModel):
    """A contact as shown next to a ticket."""

    id: int
    name: str
    email: str | None = Field(description="The contact's first e-mail address")

    @classmethod
    def from_contact(cls, contact: Contact) -> ContactBrief:
        return cls(
            id=contact.id, name=contact.name, email=contact.emails[0].address if contact.emails else None
        )


class QueueBrief(ReadModel):
    id: int
    name: str


class OrganizationBrief(ReadModel):
    id: int
    name: str


class TicketRead(BaseModel):
    id: int
    number: str = Field(examples=["T-1042"])
    subject: str
    status: TicketStatus
    priority: TicketPriority
    channel: Channel
    contact: ContactBrief
    assignee_id: int | None
    queue: QueueBrief | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    archived_at: datetime | None = None
    interaction_count: int

    @classmethod
    def from_ticket(cls, ticket: Ticket, interaction_count: int) -> TicketRead:
        return cls(**_ticket_fields(ticket), interaction_count=interaction_count)


class CsatRead(ReadModel):
    """The customer's rating of one resolution (``cycle`` 1 for the first); ``rating`` None until answered."""

    cycle: int
    requested_at: datetime
    rating: int | None = Field(ge=1, le=5, examples=[5])
    comment: str | None
    answered_at: datetime | None


class TicketDetailRead(TicketRead):
    """A ticket with its interactions, oldest first."""

    interactions: list[InteractionRead]
    sla: list[SlaClockRead] = Field(default_factory=list, description="The ticket's SLA clocks, oldest first")
    case_type: CaseType | None = Field(default=None, description="What the customer said the case is about")
    csat: list[CsatRead] = Field(default_factory=list, description="Ratings asked per resolution, oldest first")

    @classmethod
    def from_ticket_with_interactions(cls, ticket: Ticket) -> TicketDetailRead:
        interactions = [InteractionRead.model_validate(item) for item in ticket.interactions]
        return cls(
            **_ticket_fields(ticket),
            interaction_count=len(interactions),
            interactions=interactions,
            sla=[SlaClockRead.from_clock(clock, clock_module.now()) for clock in ticket.sla_clocks],
            case_type=ticket.case_type,
            csat=[CsatRead.model_validate(survey) for survey in ticket.csat_surveys],
        )


class SearchRead(BaseModel):
    tickets: list[TicketRead]
    contacts: list[ContactRead]
    interactions: list[InteractionRead]


class SlaDueRead(BaseModel):
    """A ticket with its running SLA clock that is breached or due soon."""

    ticket: TicketRead
    metric: SlaMetric
    due_at: datetime | None
    breached: bool


class SlaClockRead(ReadModel):
    """One SLA clock; ``achieved_minutes`` counts the business minutes of its closed running stretches."""

    metric: SlaMetric
    cycle: int
    state: ClockState
    target_minutes: int
    achieved_minutes: float
    started_at: datetime
    due_at: datetime | None
    warn_at: datetime | None
    paused_since: datetime | None
    warned_at: datetime | None
    breached_at: datetime | None
    met_at: datetime | None
    remaining_business_minutes: float | None = Field(
        default=None, description="Business minutes left (negative once overdue); null when stopped"
    )

    @classmethod
    def from_clock(cls, clock: SlaClock, now: datetime) -> SlaClockRead:
        read = cls.model_validate(clock)
        remaining = remaining_business_minutes(clock, now)
        read.remaining_business_minutes = round(remaining, 1) if remaining is not None else None
        return read


def _ticket_fields(ticket: Ticket) -> dict[str, object]:
    return {
        "id": ticket.id,
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "channel": ticket.channel,
        "contact": ContactBrief.from_contact(ticket.contact),
        "assignee_id": ticket.assignee_id,
        "queue": QueueBrief.model_validate(ticket.queue) if ticket.queue else None,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "resolved_at": ticket.resolved_at,
        "closed_at": ticket.closed_at,
        "archived_at": ticket.archived_at,
    }


class TicketUpdate(BaseModel):
    """Fields of a ticket an agent changes; those left out stay as they are (``null`` clears the assignee or
    queue)."""

    model_config = ConfigDict(extra="forbid")

    priority: TicketPriority | None = None
    # Bounded as database ids are: PostgreSQL refused a larger one with an error (a 500).
    assignee_id: BodyId | None = None
    queue_id: BodyId | None = None


class ReplyCreate(BaseModel):
    """An agent's e-mail reply to the ticket's contact."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_REPLY_TEXT)
    html: str | None = Field(default=None, max_length=MAX_REPLY_HTML)


class ContactCreate(BaseModel):
    """A new contact; addresses are lower-cased and numbers read in the default region and stored in E.164."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    emails: list[str] = Field(default_factory=list, max_length=20, examples=[["jana@example.org"]])
    phones: list[str] = Field(default_factory=list, max_length=20, examples=[["+420 601 123 456"]])
    language: str | None = Field(default=None, max_length=8, examples=["cs"])
    segment: str | None = Field(default=None, max_length=32, examples=["vip"], description="SLA policies may match it")
    is_org_manager: bool = Field(default=False, description="Sees every case of their organisation in the portal")


class ContactUpdate(BaseModel):
    """Fields of a contact to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=8)
    segment: str | None = Field(default=None, max_length=32)
    is_org_manager: bool | None = None
    organization_id: BodyId | None = None


class ContactRead(BaseModel):
    id: int
    name: str
    language: str | None
    segment: str | None
    is_org_manager: bool
    emails: list[str]
    phones: list[str] = Field(description="E.164 numbers")
    organization: OrganizationBrief | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_contact(cls, contact: Contact) -> ContactRead:
        return cls(**_contact_fields(contact))


class ContactDetailRead(ContactRead):
    """A contact with its timeline: interactions across all its tickets, newest first."""

    timeline: list[TimelineEntryRead]

    @classmethod
    def from_contact_with_timeline(cls, contact: Contact, timeline: list[Interaction]) -> ContactDetailRead:
        return cls(
            **_contact_fields(contact), timeline=[TimelineEntryRead.model_validate(item) for item in timeline]
        )


def _contact_fields(contact: Contact) -> dict[str, object]:
    return {
        "id": contact.id,
        "name": contact.name,
        "language": contact.language,
        "segment": contact.segment,
        "is_org_manager": contact.is_org_manager,
        "emails": [email.address for email in contact.emails],
        "phones": [phone.number for phone in contact.phones],
        "organization": OrganizationBrief.model_validate(contact.organization)
        if contact.organization
        else None,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


class StatusChange(BaseModel):
    """A new status for a ticket; ``resolved`` asks the customer to rate the resolution."""

    model_config = ConfigDict(extra="forbid")

    status: TicketStatus


class CsatReportRead(BaseModel):
    """Satisfaction ratings of the surveys requested in ``[since, until)``."""

    since: datetime
    until: datetime
    requested: int
    answered: int
    average: float | None = Field(examples=[4.3])
    counts: dict[int, int] = Field(description="How many answers gave each rating, 1 to 5")
