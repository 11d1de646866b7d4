"""SLA clock jobs on committed rows: scheduled with rq's enqueue_at, moved to the queue by our scheduler
process, run by a worker against the database (once, however often they run), and the sweep for lost jobs."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from centrala.core import clock
from centrala.core.db import get_sessionmaker
from centrala.core.queue import get_queue
from centrala.core.settings import get_settings
from centrala.tickets.models import (
    OutboundEmail,
    OutboundKind,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    Ticket,
    TicketPriority,
)
from centrala.tickets.sla_clocks import start_clocks_for_new_ticket
from centrala.workers import jobs, processes
from tests.factories import make_agent, make_ticket

# A Monday morning long before the real clock, so that rq considers every scheduled check due.
MONDAY_0900 = datetime(2025, 3, 3, 9, 0, tzinfo=ZoneInfo("Europe/Prague"))


@pytest.fixture()
def db(committed_db, redis_url):
    queue = get_queue()
    queue.empty()
    for job_id in queue.scheduled_job_registry.get_job_ids():
        queue.scheduled_job_registry.remove(job_id)
    yield get_sessionmaker()
    queue.empty()


@pytest.fixture()
def now_is(monkeypatch):
    current = {"now": MONDAY_0900}
    monkeypatch.setattr(clock, "now", lambda: current["now"])
    return lambda moment: current.update(now=moment)


@pytest.fixture()
def settings(monkeypatch):
    settings = get_settings().model_copy(
        update={"mailboxes": ["support@localhost"], "sweep_interval_seconds": 0.2}
    )
    monkeypatch.setattr(jobs, "get_settings", lambda: settings)
    return settings


def start_ticket(db) -> tuple[int, int]:
    """A committed ticket with an assignee under a 24/7 policy with breach escalations; (ticket id, first
    response clock id)."""
    with db() as session:
        if session.scalar(select(SlaPolicy.id).limit(1)) is None:
            session.add(
                SlaPolicy(
                    name="Standard",
                    is_default=True,
                    precedence=100,
                    warn_before_minutes=15,
                    targets={"default": {"first_response": 60}},
                    updated_at=MONDAY_0900,
                    escalations=[
                        {"on": "breach", "action": "notify_assignee"},
                        {"on": "breach", "action": "raise_priority"},
                    ],
                )
            )
        agent, _ = make_agent(session)
        ticket = make_ticket(session, assignee=agent, created_at=MONDAY_0900)
        [first] = start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
        assert first.metric is SlaMetric.FIRST_RESPONSE
        session.commit()
        return ticket.id, first.id


def notifications(db, ticket_id) -> int:
    with db() as session:
        return session.scalar(
            select(func.count(OutboundEmail.id)).where(
                OutboundEmail.ticket_id == ticket_id, OutboundEmail.kind == OutboundKind.NOTIFICATION
            )
        )


def test_checks_are_scheduled_moved_by_the_scheduler_and_fire_once(db, settings, now_is):
    ticket_id, clock_id = start_ticket(db)
    queue = get_queue()
    scheduled = queue.scheduled_job_registry.get_job_ids()
    assert sorted(scheduled) == sorted(
        [
            f"sla-clock-{clock_id}-warn-{int((MONDAY_0900 + timedelta(minutes=45)).timestamp())}",
            f"sla-clock-{clock_id}-due-{int((MONDAY_0900 + timedelta(minutes=60)).timestamp())}",
        ]
    )

    # Our scheduler process (not a worker's forked scheduler) moves the due jobs to the queue.
    stop = threading.Event()
    runner = threading.Thread(target=processes.run_scheduler, args=(settings, stop))
    runner.start()
    try:
        for _ in range(100):
            if queue.count == 2:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        runner.join(timeout=10)
    assert queue.count == 2 and queue.scheduled_job_registry.get_job_ids() == []

    now_is(MONDAY_0900 + timedelta(minutes=61))
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)

    with db() as session:
        first = session.get(SlaClock, clock_id)
        assert first.warned_at is not None and first.breached_at is not None
        assert session.get(Ticket, ticket_id).priority is TicketPriority.HIGH
    # Warning (assignee) and breach (assignee), each once although two jobs ran; a third run changes nothing.
    assert notifications(db, ticket_id) == 2
    assert jobs.check_sla_clock(clock_id) == {"fired": []}
    assert notifications(db, ticket_id) == 2
    with db() as session:
        assert session.get(Ticket, ticket_id).priority is TicketPriority.HIGH


def test_sweep_checks_a_clock_whose_job_was_lost(db, settings, now_is):
    ticket_id, clock_id = start_ticket(db)
    queue = get_queue()
    for job_id in queue.scheduled_job_registry.get_job_ids():  # Redis lost the jobs
        queue.scheduled_job_registry.remove(job_id)

    now_is(MONDAY_0900 + timedelta(minutes=30))
    assert jobs.sweep_sla_clocks() == 0
    now_is(MONDAY_0900 + timedelta(hours=2))
    assert jobs.sweep_sla_clocks() == 1
    assert jobs.sweep_sla_clocks() == 0

    with db() as session:
        first = session.get(SlaClock, clock_id)
        assert first.breached_at == MONDAY_0900 + timedelta(hours=2)
        assert first.next_check_at is None
    assert notifications(db, ticket_id) == 2
