"""Inbound e-mail drives SLA clocks: a customer's new ticket starts them, a follow-up restarts next response,
automated mail touches nothing."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from centrala.core.settings import get_settings
from centrala.ingest.ledger import record_inbound_email
from centrala.ingest.process import process_inbound_email
from centrala.tickets.models import ClockState, SlaClock, SlaMetric, SlaPolicy, Ticket
from centrala.tickets.outbox import queue_reply
from tests.factories import make_agent
from tests.support.mails import make_mail

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture()
def ingest(session, blobs):
    def ingest_raw(raw: bytes, *, at: datetime = NOW):
        recorded = record_inbound_email(
            session=session,
            raw=raw,
            mailbox="support@localhost",
            mail_from="x@example.org",
            rcpt_tos=["support@localhost"],
            now=at,
            blobs=blobs,
        )
        outcome = process_inbound_email(
            session=session, inbound_id=recorded.id, now=at, blobs=blobs, settings=get_settings()
        )
        session.flush()
        return outcome

    return ingest_raw


@pytest.fixture()
def policy(session):
    policy = SlaPolicy(
        name="Round the clock",
        is_default=True,
        precedence=100,
        warn_before_minutes=15,
        escalations=[],
        targets={"default": {"first_response": 60, "next_response": 120, "resolution": 480}},
        updated_at=NOW,
    )
    session.add(policy)
    session.flush()
    return policy


def clocks(session, ticket_id):
    return [
        (c.metric, c.cycle, c.state)
        for c in session.scalars(
            select(SlaClock).where(SlaClock.ticket_id == ticket_id).order_by(SlaClock.id)
        )
    ]


def test_customer_mail_opening_a_ticket_starts_its_clocks(session, ingest, policy):
    outcome = ingest(make_mail())
    assert clocks(session, outcome.ticket_id) == [
        (SlaMetric.FIRST_RESPONSE, 0, ClockState.RUNNING),
        (SlaMetric.RESOLUTION, 0, ClockState.RUNNING),
    ]


def test_automated_mail_starts_no_clocks(session, ingest, policy):
    outcome = ingest(make_mail(extra_headers={"Auto-Submitted": "auto-replied"}))
    assert clocks(session, outcome.ticket_id) == []


def test_follow_up_after_our_reply_starts_next_response(session, ingest, policy):
    first = ingest(make_mail())
    ticket = session.get(Ticket, first.ticket_id)
    agent, _ = make_agent(session)
    queue_reply(
        session=session,
        ticket=ticket,
        agent=agent,
        text="Zkuste to znovu.",
        html=None,
        now=NOW + timedelta(minutes=10),
        settings=get_settings().model_copy(update={"mailboxes": ["support@localhost"]}),
    )
    ingest(
        make_mail(
            subject="Re: Nefunguje mi přihlášení",
            message_id="<m2@example.cz>",
            in_reply_to="<m1@example.cz>",
            references="<m1@example.cz>",
        ),
        at=NOW + timedelta(hours=1),
    )
    assert clocks(session, ticket.id) == [
        (SlaMetric.FIRST_RESPONSE, 0, ClockState.MET),
        (SlaMetric.RESOLUTION, 0, ClockState.RUNNING),
        (SlaMetric.NEXT_RESPONSE, 1, ClockState.RUNNING),
    ]
    resolution = session.scalars(
        select(SlaClock).where(SlaClock.ticket_id == ticket.id, SlaClock.metric == SlaMetric.RESOLUTION)
    ).one()
    # Pending from the reply (10 min) until the answer (60 min): 10 minutes counted, 50 paused.
    assert resolution.due_at == NOW + timedelta(hours=1) + timedelta(minutes=470)
