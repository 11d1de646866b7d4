"""The scheduler applies retention on its own: a ticket closed longer ago than the archive age gets archived."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from centrala.core.db import session_scope
from centrala.core.settings import get_settings
from centrala.tickets.models import Ticket, TicketStatus
from centrala.workers import processes
from tests.factories import make_ticket
from tests.support.processes import wait_until


def test_the_scheduler_archives_tickets_closed_long_ago(committed_db, redis_url):
    settings = get_settings()
    closed_at = datetime.now(UTC) - timedelta(days=settings.archive_closed_after_days + 1)
    with session_scope() as session:
        old = make_ticket(session, status=TicketStatus.CLOSED, created_at=closed_at - timedelta(days=3))
        old.closed_at = closed_at
        recent = make_ticket(session, status=TicketStatus.CLOSED)
        recent.closed_at = datetime.now(UTC)
        ids = old.id, recent.id
    stop = threading.Event()
    runner = threading.Thread(target=processes.run_scheduler, args=(settings, stop))
    runner.start()
    try:

        def archived() -> list[int]:
            with session_scope() as session:
                return list(session.scalars(select(Ticket.id).where(Ticket.archived_at.is_not(None))))

        assert wait_until(archived, timeout=20, what="the archived ticket") == [ids[0]]
    finally:
        stop.set()
        runner.join(timeout=20)
