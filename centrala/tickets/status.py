"""Ticket status changes by agents and customers: the one place that moves status, timestamps and SLA clocks
together, and asks for a rating when a ticket is resolved."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from centrala.core.settings import Settings
from centrala.tickets.csat import request_survey
from centrala.tickets.models import Ticket, TicketStatus
from centrala.tickets.sla_clocks import on_status_change

log = logging.getLogger(__name__)

FINISHED_STATES = (TicketStatus.RESOLVED, TicketStatus.CLOSED)


def change_ticket_status(
    *, session: Session, ticket: Ticket, status: TicketStatus, now: datetime, settings: Settings
) -> bool:
    """Move ``ticket`` to ``status``, keep ``resolved_at``/``closed_at`` and its SLA clocks in step, and ask
    the customer to rate the resolution when it becomes resolved. Returns False when nothing changed."""
    old = ticket.status
    if old is status:
        return False
    ticket.status = status
    if status is not TicketStatus.CLOSED:
        # Archived is a kind of closed: a ticket that moves on is back in the working set.
        ticket.archived_at = None
    if status is TicketStatus.RESOLVED:
        ticket.resolved_at = now
        ticket.closed_at = None
    elif status is TicketStatus.CLOSED:
        ticket.resolved_at = ticket.resolved_at or now
        ticket.closed_at = now
    else:
        ticket.resolved_at = None
        ticket.closed_at = None
    ticket.updated_at = max(ticket.updated_at, now)
    on_status_change(session=session, ticket=ticket, old=old, new=status, now=now)
    if status is TicketStatus.RESOLVED:
        request_survey(session=session, ticket=ticket, now=now, settings=settings)
    session.flush()
    log.info("ticket %s: %s -> %s", ticket.number, old.value, status.value)
    return True
