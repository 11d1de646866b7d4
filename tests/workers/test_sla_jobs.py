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
from centrala.tickets import sla_clocks
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


def start_ticket(db, at: datetime = MONDAY_0900) -> tuple[int, int]:
    """A committed ticket opened ``at`` with an assignee under a 24/7 policy with breach escalations; (ticket
    id, first response clock id)."""
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
        ticket = make_ticket(session, assignee=agent, created_at=at)
        [first] = start_clocks_for_new_ticket(session=session, ticket=ticket, now=at)
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
            f"sla-due-{int((MONDAY_0900 + timedelta(minutes=45)).timestamp())}",
            f"sla-due-{int((MONDAY_0900 + timedelta(minutes=60)).timestamp())}",
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


def second_of(moment: datetime) -> int:
    return int(moment.timestamp())


def test_one_check_per_second_fires_every_clock_due_by_then_and_none_due_later(db, settings, now_is):
    # Two tickets opened in the same second, a third ten minutes later.
    same = [start_ticket(db) for _ in range(2)]
    later_ticket, later_clock = start_ticket(db, at=MONDAY_0900 + timedelta(minutes=10))
    queue = get_queue()
    assert sorted(queue.scheduled_job_registry.get_job_ids()) == sorted(
        f"sla-due-{second_of(MONDAY_0900 + timedelta(minutes=minutes))}" for minutes in (45, 55, 60, 70)
    )

    at_ten = MONDAY_0900 + timedelta(minutes=60)
    now_is(at_ten)
    assert jobs.check_due_sla_clocks(second_of(at_ten)) == {"second": second_of(at_ten), "checked": 3}

    with db() as session:
        for ticket_id, clock_id in same:
            first = session.get(SlaClock, clock_id)
            assert first.warned_at == first.breached_at == at_ten
            assert session.get(Ticket, ticket_id).priority is TicketPriority.HIGH
        later = session.get(SlaClock, later_clock)
        assert later.warned_at == at_ten and later.breached_at is None
        assert later.next_check_at == MONDAY_0900 + timedelta(minutes=70)
        assert session.get(Ticket, later_ticket).priority is not TicketPriority.HIGH
    # The job of an earlier second, run late, finds nothing left to fire.
    assert jobs.check_due_sla_clocks(second_of(MONDAY_0900 + timedelta(minutes=45)))["checked"] == 0
    assert sum(notifications(db, ticket_id) for ticket_id, _ in same) == 4


def test_a_clock_whose_escalation_fails_does_not_keep_the_others_of_its_second_from_firing(
    db, settings, now_is, monkeypatch
):
    (_, failing), (ticket_id, fine) = start_ticket(db), start_ticket(db)
    escalate = sla_clocks.escalate

    def escalate_failing_for_one(*, clock, **kwargs):
        if clock.id == failing:
            raise ValueError("no such notification template")
        escalate(clock=clock, **kwargs)

    monkeypatch.setattr(sla_clocks, "escalate", escalate_failing_for_one)
    due = MONDAY_0900 + timedelta(minutes=60)
    now_is(due)
    with pytest.raises(RuntimeError, match=rf"1 sla clock\(s\) could not be checked: \[{failing}\]"):
        jobs.check_due_sla_clocks(second_of(due))

    with db() as session:
        assert session.get(SlaClock, fine).breached_at == due
        # Rolled back: still due, for the sweep to try again.
        left = session.get(SlaClock, failing)
        assert left.warned_at is None and left.breached_at is None
        assert left.next_check_at == MONDAY_0900 + timedelta(minutes=45)
    assert notifications(db, ticket_id) == 2


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
