"""What a signed-in customer may see: every portal lookup goes through ``ticket_scope``.

``ticket_scope`` is the one place that decides visibility: the contact's own tickets, and for an organisation
manager every ticket of their organisation's contacts. Interactions, attachments and surveys are reached only
through a ticket in scope; something that does not exist and something that is someone else's both raise the
same NotFoundError, so ids cannot be probed. Customers never see internal notes, calls or automated mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session, selectinload

from centrala.core.errors import NotFoundError
from centrala.tickets.models import (
    Attachment,
    CaseType,
    Channel,
    ClockState,
    Contact,
    CsatSurvey,
    Direction,
    Interaction,
    SlaClock,
    SlaMetric,
    Ticket,
    TicketStatus,
    format_ticket_number,
)
from centrala.tickets.queries import ticket_id_from_reference

PAGE_SIZE = 25
MAX_PAGE = 1000


@dataclass(frozen=True)
class Viewer:
    """The signed-in customer, as the scope needs them."""

    contact_id: int
    organization_id: int | None
    is_org_manager: bool

    @classmethod
    def of(cls, contact: Contact) -> Viewer:
        return cls(contact.id, contact.organization_id, contact.is_org_manager)


def ticket_scope(viewer: Viewer) -> ColumnElement[bool]:
    """The condition on ``Ticket`` that every portal lookup applies: the tickets ``viewer`` may see."""
    if viewer.is_org_manager and viewer.organization_id is not None:
        colleagues = select(Contact.id).where(Contact.organization_id == viewer.organization_id)
        return Ticket.contact_id.in_(colleagues.scalar_subquery())
    return Ticket.contact_id == viewer.contact_id


def customer_visible() -> ColumnElement[bool]:
    """Interactions a customer may read: e-mail and portal messages to and from us, never notes, calls,
    bounces or anything flagged for an agent's eye."""
    return and_(
        Interaction.channel.in_((Channel.EMAIL, Channel.PORTAL)),
        Interaction.direction.in_((Direction.INBOUND, Direction.OUTBOUND)),
        Interaction.classification == "normal",
        Interaction.flag.is_(None),
    )


@dataclass(frozen=True)
class CaseRow:
    """One line of the customer's list of cases."""

    number: str
    subject: str
    status: TicketStatus
    case_type: CaseType | None
    updated_at: datetime
    answer_by: datetime | None
    contact_name: str


@dataclass(frozen=True)
class CasePage:
    rows: list[CaseRow]
    page: int
    has_next: bool


def list_cases(*, session: Session, viewer: Viewer, page: int = 1) -> CasePage:
    """The viewer's cases, most recently updated first, ``PAGE_SIZE`` a page, with the SLA due of each."""
    page = max(1, min(page, MAX_PAGE))
    rows = session.execute(
        select(Ticket.id, Ticket.subject, Ticket.status, Ticket.case_type, Ticket.updated_at, Contact.name)
        .join(Contact, Contact.id == Ticket.contact_id)
        .where(ticket_scope(viewer))
        .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(PAGE_SIZE + 1)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    has_next = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    due = answer_due_by(session=session, ticket_ids=[row.id for row in rows])
    return CasePage(
        rows=[
            CaseRow(
                number=format_ticket_number(row.id),
                subject=row.subject,
                status=row.status,
                case_type=row.case_type,
                updated_at=row.updated_at,
                answer_by=due.get(row.id),
                contact_name=row.name,
            )
            for row in rows
        ],
        page=page,
        has_next=has_next,
    )


def answer_due_by(*, session: Session, ticket_ids: list[int]) -> dict[int, datetime]:
    """For each ticket with a running response clock, when we promised to answer: the earliest due."""
    if not ticket_ids:
        return {}
    rows = session.execute(
        select(SlaClock.ticket_id, func.min(SlaClock.due_at))
        .where(
            SlaClock.ticket_id.in_(ticket_ids),
            SlaClock.state == ClockState.RUNNING,
            SlaClock.metric.in_((SlaMetric.FIRST_RESPONSE, SlaMetric.NEXT_RESPONSE)),
            SlaClock.due_at.is_not(None),
        )
        .group_by(SlaClock.ticket_id)
    ).all()
    return {ticket_id: due for ticket_id, due in rows if due is not None}


def get_case_or_raise(*, session: Session, viewer: Viewer, number: str) -> Ticket:
    """The viewer's ticket ``T-1042``; NotFoundError when there is none or it is not theirs to see."""
    ticket_id = ticket_id_from_reference(number)
    ticket = None
    if ticket_id is not None:
        ticket = session.scalar(
            select(Ticket).options(selectinload(Ticket.contact)).where(Ticket.id == ticket_id, ticket_scope(viewer))
        )
    if ticket is None:
        raise NotFoundError("no such case")
    return ticket


def list_case_messages(*, session: Session, ticket: Ticket) -> list[Interaction]:
    """The thread of a ticket the caller got from ``get_case_or_raise``, oldest first, with attachments."""
    return list(
        session.scalars(
            select(Interaction)
            .options(selectinload(Interaction.attachments))
            .where(Interaction.ticket_id == ticket.id, customer_visible())
            .order_by(Interaction.occurred_at, Interaction.id)
        )
    )


def get_attachment_or_raise(*, session: Session, viewer: Viewer, attachment_id: int) -> Attachment:
    """An attachment of a message the viewer may read; NotFoundError otherwise."""
    attachment = session.scalar(
        select(Attachment)
        .join(Interaction, Interaction.id == Attachment.interaction_id)
        .join(Ticket, Ticket.id == Interaction.ticket_id)
        .where(Attachment.id == attachment_id, ticket_scope(viewer), customer_visible())
    )
    if attachment is None:
        raise NotFoundError("no such file")
    return attachment


def list_surveys_to_answer(*, session: Session, viewer: Viewer, limit: int = 3) -> list[str]:
    """Numbers of the viewer's resolved tickets whose latest resolution awaits a rating (the banner)."""
    newest = (
        select(func.max(CsatSurvey.cycle)).where(CsatSurvey.ticket_id == Ticket.id).correlate(Ticket).scalar_subquery()
    )
    ids = session.scalars(
        select(Ticket.id)
        .join(CsatSurvey, CsatSurvey.ticket_id == Ticket.id)
        .where(
            ticket_scope(viewer),
            Ticket.status.in_((TicketStatus.RESOLVED, TicketStatus.CLOSED)),
            CsatSurvey.answered_at.is_(None),
            CsatSurvey.cycle == newest,
        )
        .order_by(CsatSurvey.requested_at.desc())
        .limit(limit)
    ).all()
    return [format_ticket_number(ticket_id) for ticket_id in ids]
