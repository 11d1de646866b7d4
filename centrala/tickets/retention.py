"""Retention of tickets: closed tickets past the archive age leave the working set, kept whole."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from centrala.tickets.models import Ticket, TicketStatus

log = logging.getLogger(__name__)

ARCHIVE_BATCH = 1000


def archive_closed_tickets(
    *, session: Session, now: datetime, older_than: timedelta, limit: int | None = None
) -> int:
    """Mark tickets closed longer than ``older_than`` ago as archived (at most ``limit``, by default
    ``ARCHIVE_BATCH``); returns how many.

    Nothing is deleted: an archived ticket keeps its timeline, clocks and ratings, is found by search and by
    its number, and comes back into the working set when it is reopened.
    """
    cutoff = now - older_than
    tickets = list(
        session.scalars(
            select(Ticket)
            .where(
                Ticket.status == TicketStatus.CLOSED,
                Ticket.archived_at.is_(None),
                Ticket.closed_at < cutoff,
            )
            .order_by(Ticket.id)
            .limit(limit or ARCHIVE_BATCH)
            .with_for_update()
        )
    )
    for ticket in tickets:
        ticket.archived_at = now
    if tickets:
        session.flush()
        log.info("archived %d ticket(s) closed before %s", len(tickets), cutoff.isoformat())
    return len(tickets)
