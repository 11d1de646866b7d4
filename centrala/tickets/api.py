"""The JSON API under ``/api/v1``: tickets, replies and contacts, for agents holding a bearer token."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.db import get_db
from centrala.core.errors import AuthenticationError, InvalidInputError, NotFoundError
from centrala.core.ids import PathId, QueryId
from centrala.core.settings import Settings, get_settings
from centrala.core.text import single_line
from centrala.tickets import contacts, queries
from centrala.tickets import search as search_module
from centrala.tickets.agents import authenticate_token, may_work_ticket, queue_ids_of, workable_tickets
from centrala.tickets.csat import summarize_csat
from centrala.tickets.models import Agent, Organization, Queue, Ticket, TicketStatus
from centrala.tickets.outbox import queue_reply
from centrala.tickets.schemas import (
    ContactCreate,
    ContactDetailRead,
    ContactRead,
    ContactUpdate,
    CsatReportRead,
    InteractionRead,
    ReplyCreate,
    SearchRead,
    SlaDueRead,
    StatusChange,
    TicketDetailRead,
    TicketRead,
    TicketUpdate,
)
from centrala.tickets.sla_clocks import recompute_ticket_clocks
from centrala.tickets.status import change_ticket_status

MAX_PAGE_SIZE = 200
MAX_DUE_WINDOW = 60 * 24 * 30

SessionDep = Annotated[Session, Depends(get_db)]


def get_app_settings(request: Request) -> Settings:
    """The settings given to ``create_app(settings)``, else the process-wide ones."""
    settings = getattr(request.app.state, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

# auto_error=False: a missing or non-Bearer Authorization header reaches us as None, and we answer 401 with
# WWW-Authenticate (RFC 6750 §3) through the error tree rather than FastAPI's own response.
_bearer = HTTPBearer(
    auto_error=False, description="An agent's API token, printed by `centrala agents create`."
)


def get_current_agent(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Agent:
    """The agent whose bearer token authorises this request; raises AuthenticationError."""
    if credentials is None:
        raise AuthenticationError("an Authorization: Bearer <token> header is required")
    return authenticate_token(session=session, token=credentials.credentials, now=clock.now())


CurrentAgentDep = Annotated[Agent, Depends(get_current_agent)]


def workable_ticket_or_raise(
    *, session: Session, agent: Agent, reference: str | int, with_interactions: bool = False
) -> Ticket:
    """The ticket if ``agent`` may work it; a ticket of someone else's queue is as missing as one that is not
    there (404), so its number says nothing."""
    try:
        ticket = queries.get_ticket_or_raise(
            session=session, reference=reference, with_interactions=with_interactions
        )
    except NotFoundError:
        raise NotFoundError(f"no ticket {reference}") from None
    if not may_work_ticket(session=session, agent=agent, ticket=ticket):
        raise NotFoundError(f"no ticket {reference}")
    return ticket


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="At most this many items")]
Offset = Annotated[int, Query(ge=0, le=queries.MAX_ID, description="Skip this many items")]
TicketReference = Annotated[
    str, Path(description="The ticket's id (`42`) or number (`T-1042`)", max_length=32)
]

router = APIRouter(prefix="/api/v1", dependencies=[Depends(get_current_agent)])


@router.get("/tickets", tags=["tickets"])
def list_tickets(
    session: SessionDep,
    agent: CurrentAgentDep,
    status: Annotated[list[TicketStatus] | None, Query(description="Only tickets in these states")] = None,
    contact_id: QueryId | None = None,
    include_archived: Annotated[
        bool, Query(description="Also tickets archived after being closed long ago (left out by default)")
    ] = False,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[TicketRead]:
    """Tickets, most recently updated first."""
    items = queries.list_tickets(
        session=session,
        statuses=status or (),
        contact_id=contact_id,
        include_archived=include_archived,
        limit=limit,
        offset=offset,
        only=workable_tickets(session=session, agent=agent),
    )
    return [TicketRead.from_ticket(item.ticket, item.interaction_count) for item in items]


@router.get("/tickets/{ticket_id}", tags=["tickets"])
def get_ticket(session: SessionDep, agent: CurrentAgentDep, ticket_id: TicketReference) -> TicketDetailRead:
    """A ticket with its interactions, oldest first."""
    ticket = workable_ticket_or_raise(
        session=session, agent=agent, reference=ticket_id, with_interactions=True
    )
    return TicketDetailRead.from_ticket_with_interactions(ticket)


@router.post("/tickets/{ticket_id}/replies", status_code=201, tags=["tickets"])
def create_reply(
    session: SessionDep,
    settings: SettingsDep,
    agent: CurrentAgentDep,
    ticket_id: TicketReference,
    reply: ReplyCreate,
) -> InteractionRead:
    """Record the agent's e-mail reply (the ticket then waits on the customer) and queue it to be sent.

    The answer's ``delivery_state`` is ``queued``; a background job sends it and the state follows on the
    ticket's interactions (``sent``, ``deferred``, ``bounced``, ``failed``).
    """
    ticket = workable_ticket_or_raise(session=session, agent=agent, reference=ticket_id)
    outbound = queue_reply(
        session=session,
        ticket=ticket,
        agent=agent,
        text=reply.text,
        html=reply.html,
        now=clock.now(),
        settings=settings,
    )
    session.commit()
    return InteractionRead.model_validate(outbound.interaction)


@router.patch("/tickets/{ticket_id}", tags=["tickets"])
def update_ticket(
    session: SessionDep, agent: CurrentAgentDep, ticket_id: TicketReference, change: TicketUpdate
) -> TicketDetailRead:
    """Change the ticket's priority, assignee or queue. Its open SLA clocks follow: a new priority or a queue
    under another policy moves their targets and due times (the time already measured is kept)."""
    ticket = workable_ticket_or_raise(session=session, agent=agent, reference=ticket_id)
    given = change.model_fields_set
    if "priority" in given:
        if change.priority is None:
            raise InvalidInputError("priority cannot be empty")
        ticket.priority = change.priority
    if "assignee_id" in given:
        if change.assignee_id is not None and session.get(Agent, change.assignee_id) is None:
            raise InvalidInputError(f"no agent {change.assignee_id}")
        ticket.assignee_id = change.assignee_id
    if "queue_id" in given:
        if change.queue_id is not None and session.get(Queue, change.queue_id) is None:
            raise InvalidInputError(f"no queue {change.queue_id}")
        ticket.queue_id = change.queue_id
    session.flush()
    session.refresh(ticket)
    if given & {"priority", "queue_id"}:
        recompute_ticket_clocks(session=session, ticket=ticket)
    ticket.updated_at = max(ticket.updated_at, clock.now())
    session.commit()
    session.expire_all()
    ticket = queries.get_ticket_or_raise(session=session, reference=ticket_id, with_interactions=True)
    return TicketDetailRead.from_ticket_with_interactions(ticket)


@router.get("/search", tags=["search"])
def search_everything(
    session: SessionDep,
    settings: SettingsDep,
    agent: CurrentAgentDep,
    q: Annotated[
        str, Query(min_length=1, max_length=search_module.MAX_QUERY_LENGTH, description="What to find")
    ],
) -> SearchRead:
    """Tickets (by number or subject), contacts (by name, address or phone number) and messages (full text),
    within the queues the agent works."""
    results = search_module.search(
        session=session,
        query=q,
        region=settings.default_region,
        queue_ids=queue_ids_of(session=session, agent=agent),
    )
    return SearchRead(
        tickets=[TicketRead.from_ticket(ticket, 0) for ticket in results.tickets],
        contacts=[ContactRead.from_contact(contact) for contact in results.contacts],
        interactions=[InteractionRead.model_validate(item) for item in results.interactions],
    )


@router.get("/sla/due", tags=["tickets"])
def sla_due(
    session: SessionDep,
    agent: CurrentAgentDep,
    within_minutes: Annotated[
        int, Query(ge=0, le=MAX_DUE_WINDOW, description="Due within this many minutes")
    ] = 60,
    limit: Limit = 50,
) -> list[SlaDueRead]:
    """Open tickets whose running SLA clock is breached or due within ``within_minutes``, nearest first."""
    due = queries.clocks_due(
        session=session,
        now=clock.now(),
        within_minutes=within_minutes,
        limit=limit,
        only=workable_tickets(session=session, agent=agent),
    )
    return [
        SlaDueRead(
            ticket=TicketRead.from_ticket(ticket, 0),
            metric=running.metric,
            due_at=running.due_at,
            breached=running.breached_at is not None,
        )
        for ticket, running in due
    ]


@router.post("/tickets/{ticket_id}/status", tags=["tickets"])
def set_ticket_status(
    session: SessionDep,
    settings: SettingsDep,
    agent: CurrentAgentDep,
    ticket_id: TicketReference,
    change: StatusChange,
) -> TicketDetailRead:
    """Change the ticket's status; its SLA clocks follow, and resolving it asks the customer for a rating."""
    ticket = workable_ticket_or_raise(session=session, agent=agent, reference=ticket_id)
    change_ticket_status(
        session=session, ticket=ticket, status=change.status, now=clock.now(), settings=settings
    )
    session.commit()
    session.expire_all()
    ticket = queries.get_ticket_or_raise(session=session, reference=ticket_id, with_interactions=True)
    return TicketDetailRead.from_ticket_with_interactions(ticket)


@router.get("/reports/csat", tags=["reports"])
def csat_report(
    session: SessionDep,
    since: Annotated[datetime, Query(description="Surveys requested at or after this instant")],
    until: Annotated[datetime, Query(description="Surveys requested before this instant")],
) -> CsatReportRead:
    """Customer satisfaction: how many ratings were asked and answered, their average and distribution."""
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInputError("since and until need a time zone offset")
    summary = summarize_csat(session=session, since=since, until=until)
    return CsatReportRead(since=since, until=until, **dataclasses.asdict(summary))


@router.get("/contacts", tags=["contacts"])
def find_contacts(
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str | None, Query(description="Contacts owning this address (any case)")] = None,
    phone: Annotated[
        str | None, Query(description="Contacts at this number, E.164 or national in the default region")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[ContactRead]:
    """Contacts by e-mail address or by phone number (a shared line gives several), else all contacts."""
    if email is not None and phone is not None:
        raise InvalidInputError("look contacts up by email or by phone, not both")
    if email is not None:
        found = contacts.find_contacts_by_email(session=session, address=email)
    elif phone is not None:
        found = contacts.find_contacts_by_phone(session=session, number=phone, region=settings.default_region)
    else:
        found = queries.list_contacts(session=session, limit=limit, offset=offset)
    return [ContactRead.from_contact(contact) for contact in found]


@router.post("/contacts", status_code=201, tags=["contacts"])
def create_contact(session: SessionDep, settings: SettingsDep, contact: ContactCreate) -> ContactRead:
    """Create a contact; 409 when one of its e-mail addresses already belongs to another contact."""
    created = contacts.create_contact(
        session=session,
        name=contact.name,
        emails=contact.emails,
        phones=contact.phones,
        language=contact.language,
        now=clock.now(),
        region=settings.default_region,
    )
    created.segment = _segment(contact.segment)
    created.is_org_manager = contact.is_org_manager
    session.commit()
    return ContactRead.from_contact(created)


@router.patch("/contacts/{contact_id}", tags=["contacts"])
def update_contact(session: SessionDep, contact_id: PathId, change: ContactUpdate) -> ContactRead:
    """Change a contact's name, language, segment, organisation or whether they manage their organisation's
    cases in the portal. A new segment or organisation moves the open SLA clocks of the contact's tickets to
    the policy that now applies."""
    contact = queries.get_contact_or_raise(session=session, contact_id=contact_id)
    given = change.model_fields_set
    if "name" in given:
        contact.name = single_line(change.name or "")
    if "language" in given:
        contact.language = (change.language or "").strip() or None
    if "segment" in given:
        contact.segment = _segment(change.segment)
    if "is_org_manager" in given:
        contact.is_org_manager = bool(change.is_org_manager)
    if "organization_id" in given:
        organization = session.get(Organization, change.organization_id) if change.organization_id else None
        if change.organization_id is not None and organization is None:
            raise InvalidInputError(f"no organisation {change.organization_id}")
        contact.organization = organization
    contact.updated_at = clock.now()
    session.flush()
    if given & {"segment", "organization_id"}:
        for ticket in session.scalars(select(Ticket).where(Ticket.contact_id == contact.id)):
            recompute_ticket_clocks(session=session, ticket=ticket)
    session.commit()
    return ContactRead.from_contact(queries.get_contact_or_raise(session=session, contact_id=contact_id))


def _segment(value: str | None) -> str | None:
    """A segment as stored: one lower-case word (letters, digits, ``-``, ``_``), or None."""
    segment = (value or "").strip().lower()
    if segment and not segment.replace("-", "").replace("_", "").isalnum():
        raise InvalidInputError("a segment is one word of letters, digits, '-' or '_'")
    return segment or None


@router.get("/contacts/{contact_id}", tags=["contacts"])
def get_contact(session: SessionDep, agent: CurrentAgentDep, contact_id: PathId) -> ContactDetailRead:
    """A contact with its timeline across all its tickets (those the agent may work), newest first."""
    contact = queries.get_contact_or_raise(session=session, contact_id=contact_id)
    queues = queue_ids_of(session=session, agent=agent)
    timeline = [
        item
        for item in queries.list_contact_timeline(session=session, contact_id=contact.id)
        if queues is None
        or item.ticket is None
        or may_work_ticket(session=session, agent=agent, ticket=item.ticket)
    ]
    return ContactDetailRead.from_contact_with_timeline(contact, timeline)
