"""What an agent's console shows: their work lists, the quarantine, the caller log."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from centrala.tickets.agents import may_work, may_work_ticket, queue_ids_of, workable_tickets
from centrala.tickets.models import (
    Agent,
    ClockState,
    Contact,
    SlaClock,
    Ticket,
    TicketStatus,
    TicketTag,
)

OPEN_STATES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING, TicketStatus.THIRD_PARTY)
# Rows per work list on the home page, and per page of the ticket list: what an agent reads at a glance, and what
# a page renders in a few milliseconds (a list's cost is mostly its rows' objects and markup, not its query).
LIST_LIMIT = 25
PAGE_SIZE = 50


@dataclass(frozen=True)
class WorkItem:
    ticket: Ticket
    due_at: datetime | None  # the nearest running SLA clock's due instant


@dataclass(frozen=True)
class WorkLists:
    mine: list[WorkItem]
    unassigned: list[WorkItem]
    waiting: list[WorkItem]
    breaching: list[WorkItem]


def work_lists(*, session: Session, agent: Agent) -> WorkLists:
    """My open tickets, unassigned ones in my queues, those waiting on the customer, and the open tickets
    nearest to an SLA breach (sorted by due)."""
    queues = queue_ids_of(session=session, agent=agent)
    in_my_queues = [] if queues is None else [Ticket.queue_id.in_(queues)]
    mine = _items(
        session, Ticket.assignee_id == agent.id, Ticket.status.in_((TicketStatus.NEW, TicketStatus.OPEN))
    )
    unassigned = _items(
        session,
        Ticket.assignee_id.is_(None),
        Ticket.status.in_((TicketStatus.NEW, TicketStatus.OPEN)),
        *in_my_queues,
    )
    waiting = _items(
        session, Ticket.status.in_((TicketStatus.PENDING, TicketStatus.THIRD_PARTY)), *in_my_queues
    )
    breaching = _nearest_due(session, *in_my_queues)
    return WorkLists(mine=mine, unassigned=unassigned, waiting=waiting, breaching=breaching)


def _nearest_due(session: Session, *conditions: object) -> list[WorkItem]:
    """Open tickets by their nearest running clock's due instant, nearest first.

    The running clocks are read in due order along ``ix_sla_clock_state_due_at_id`` and each ticket is taken at
    its first (nearest) clock, so a full list costs a few hundred index entries; grouping every running clock by
    ticket first cost a pass over all of them.
    """
    nearest: dict[int, datetime] = {}
    batch, offset = 3 * LIST_LIMIT, 0
    while len(nearest) < LIST_LIMIT:
        rows = session.execute(
            select(SlaClock.ticket_id, SlaClock.due_at)
            .join(Ticket, Ticket.id == SlaClock.ticket_id)
            .where(
                SlaClock.state == ClockState.RUNNING,
                SlaClock.due_at.is_not(None),
                Ticket.status.in_(OPEN_STATES),
                *conditions,  # type: ignore[arg-type]
            )
            .order_by(SlaClock.due_at, SlaClock.id)
            .limit(batch)
            .offset(offset)
        ).all()
        for ticket_id, due_at in rows:
            if len(nearest) < LIST_LIMIT:
                nearest.setdefault(ticket_id, due_at)
        if len(rows) < batch:
            break
        offset += batch
    tickets = {
        ticket.id: ticket
        for ticket in session.scalars(
            select(Ticket)
            .where(Ticket.id.in_(list(nearest)))
            .options(selectinload(Ticket.contact).selectinload(Contact.emails), selectinload(Ticket.queue))
        )
    }
    return [WorkItem(tickets[ticket_id], due_at) for ticket_id, due_at in nearest.items()]


def _items(session: Session, *conditions: object) -> list[WorkItem]:
    tickets = session.scalars(
        select(Ticket)
        .where(*conditions)  # type: ignore[arg-type]
        .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(LIST_LIMIT)
        .options(selectinload(Ticket.contact).selectinload(Contact.emails), selectinload(Ticket.queue))
    ).all()
    return [WorkItem(ticket, None) for ticket in tickets]


def can_work(*, session: Session, agent: Agent, ticket: Ticket) -> bool:
    """Whether ``agent`` may open and work ``ticket`` (see ``tickets.agents.may_work_ticket``)."""
    return may_work_ticket(session=session, agent=agent, ticket=ticket)


def workable_ticket_ids(*, session: Session, agent: Agent, tickets: Iterable[Ticket]) -> set[int]:
    """The ids of those of ``tickets`` that ``agent`` may open (as ``can_work``), asking for their queues once."""
    queues = queue_ids_of(session=session, agent=agent)
    return {ticket.id for ticket in tickets if may_work(agent=agent, queues=queues, ticket=ticket)}


@dataclass(frozen=True)
class TicketFilter:
    statuses: tuple[TicketStatus, ...] = ()
    priority: str | None = None
    queue_id: int | None = None
    organization_id: int | None = None
    assignee_id: int | None = None
    case_type: str | None = None
    tag: str | None = None


def filtered_tickets(
    *, session: Session, agent: Agent, filters: TicketFilter, limit: int = PAGE_SIZE, offset: int = 0
) -> list[WorkItem]:
    """Tickets the agent may work that match ``filters``, most recently updated first, ``limit`` from ``offset``."""
    # Archived tickets (closed long ago, see tickets.retention) are out of the working set; search finds them.
    conditions: list[object] = [Ticket.archived_at.is_(None), workable_tickets(session=session, agent=agent)]
    if filters.statuses:
        conditions.append(Ticket.status.in_(filters.statuses))
    if filters.priority:
        conditions.append(Ticket.priority == filters.priority)
    if filters.queue_id is not None:
        conditions.append(Ticket.queue_id == filters.queue_id)
    if filters.assignee_id is not None:
        conditions.append(Ticket.assignee_id == filters.assignee_id)
    if filters.case_type:
        conditions.append(Ticket.case_type == filters.case_type)
    if filters.tag:
        conditions.append(Ticket.id.in_(select(TicketTag.ticket_id).where(TicketTag.tag == filters.tag)))
    if filters.organization_id is not None:
        conditions.append(
            Ticket.contact_id.in_(select(Contact.id).where(Contact.organization_id == filters.organization_id))
        )
    tickets = session.scalars(
        select(Ticket)
        .where(*conditions)  # type: ignore[arg-type]
        .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(limit)
        .offset(offset)
        .options(
            selectinload(Ticket.contact).selectinload(Contact.emails),
            selectinload(Ticket.queue),
            selectinload(Ticket.tag_rows),
        )
    ).all()
    return [WorkItem(ticket, None) for ticket in tickets]
