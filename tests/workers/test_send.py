"""The outbound jobs on committed rows: API reply to Maildir, retries through the sweep against a real SMTP
relay, final failures, and duplicate jobs."""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import select

from centrala.app import create_app
from centrala.core import clock
from centrala.core.db import get_sessionmaker
from centrala.core.queue import get_queue
from centrala.core.settings import get_settings
from centrala.mail.tokens import verify_message_id, verify_reply_address
from centrala.tickets.models import (
    Channel,
    Interaction,
    OutboundEmail,
    OutboundKind,
    OutboundState,
    Ticket,
    TicketStatus,
)
from centrala.tickets.outbox import SEND_DUE_JOB, SEND_DUE_KEY, queue_reply
from centrala.workers import jobs
from tests.factories import NOW, make_agent, make_contact, make_interaction, make_ticket
from tests.support.smtp_sink import running_sink


@pytest.fixture()
def db(committed_db, redis_url):
    """Sessions whose commits are real (and send their jobs to the run's Redis); tables emptied afterwards."""
    queue = get_queue()
    queue.empty()
    jobs.release_coalesced(SEND_DUE_KEY)
    yield get_sessionmaker()
    queue.empty()
    jobs.release_coalesced(SEND_DUE_KEY)


@pytest.fixture()
def clock_at(monkeypatch):
    """Set the time every job reads: ``clock_at(datetime)``."""
    current = {"now": NOW}
    monkeypatch.setattr(clock, "now", lambda: current["now"])

    def set_now(moment):
        current["now"] = moment

    return set_now


@pytest.fixture()
def job_settings(monkeypatch, tmp_path):
    """The settings the jobs read: the run's, with a private var folder (its Maildir) and ``updates``."""

    def use(**updates):
        settings = get_settings().model_copy(
            update={"var_dir": tmp_path / "var", "mailboxes": ["support@localhost"], **updates}
        )
        monkeypatch.setattr(jobs, "get_settings", lambda: settings)
        return settings

    return use


def setup_ticket(db, *, assignee_email: str | None = None):
    """A committed ticket with the customer's first message; returns (ticket id, agent id, agent token)."""
    with db() as session:
        agent, token = make_agent(session, email=assignee_email or "petr@centrala.test", name="Petr Dvořák")
        contact = make_contact(session, name="Jana Nováková", emails=["jana@example.cz"], language="cs")
        ticket = make_ticket(
            session,
            contact=contact,
            subject="Nefunguje mi přihlášení",
            assignee=agent,
            status=TicketStatus.OPEN,
        )
        make_interaction(
            session, ticket=ticket, external_id="m1@example.cz", author_address="jana@example.cz"
        )
        session.commit()
        return ticket.id, agent.id, token


def queue_committed_reply(db, settings, ticket_id: int, agent_id: int) -> int:
    from centrala.tickets.models import Agent

    with db() as session:
        ticket = session.get(Ticket, ticket_id)
        outbound = queue_reply(
            session=session,
            ticket=ticket,
            agent=session.get(Agent, agent_id),
            text="Zkuste to znovu.",
            html=None,
            now=NOW,
            settings=settings,
        )
        session.commit()
        return outbound.id


def queued_functions() -> list[str]:
    return [job.func_name for job in get_queue().get_jobs()]


def load(db, outbound_id: int) -> OutboundEmail:
    with db() as session:
        return session.get(OutboundEmail, outbound_id)


def test_api_reply_is_queued_and_the_job_delivers_it_to_the_maildir(db, job_settings, clock_at):
    settings = job_settings()
    ticket_id, _agent_id, token = setup_ticket(db)
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings)) as client:
        response = client.post(
            f"/api/v1/tickets/{ticket_id}/replies", json={"text": "Zkuste to znovu."}, headers=auth
        )
        assert response.status_code == 201
        body = response.json()
        assert body["delivery_state"] == "queued"

        with db() as session:
            outbound = session.scalar(select(OutboundEmail).where(OutboundEmail.interaction_id == body["id"]))
            ticket = session.get(Ticket, ticket_id)
        assert queued_functions() == [SEND_DUE_JOB]  # sent to Redis after the commit

        clock_at(NOW + timedelta(minutes=1))
        assert jobs.send_due_outbound_emails() == {"sent": 1}
        assert jobs.send_due_outbound_emails() == {}  # a second drain finds nothing due
        assert jobs.send_outbound_email(outbound.id) == {"status": "not due"}  # nor does a job for the row

        maildir = mailbox.Maildir(settings.outbox_dir, create=False)
        [key] = list(maildir.keys())
        message = email.message_from_bytes(maildir.get_bytes(key), policy=email.policy.default)
        secret = settings.secret_key.get_secret_value()
        assert message["Delivered-To"] == "jana@example.cz"
        assert message["Return-Path"] == "<support@localhost>"
        assert message["From"].addresses[0].addr_spec == "support@localhost"
        assert message["Subject"] == f"Re: Nefunguje mi přihlášení [#{ticket.number}]"
        assert verify_message_id(message["Message-ID"], secret) == ticket_id
        assert message["Message-ID"] == f"<{body['external_id']}>"
        assert message["In-Reply-To"] == "<m1@example.cz>"
        assert message["References"] == "<m1@example.cz>"
        assert verify_reply_address(message["Reply-To"].addresses[0].addr_spec, secret) == (
            "support@localhost",
            ticket_id,
        )
        # The agent's words, then the case's portal link that every e-mail to the customer carries.
        content = message.get_content().replace("\r\n", "\n")
        assert content.startswith("Zkuste to znovu.\n\n--\n")
        assert content.rstrip().endswith(f"/portal/tickets/{ticket.number}")

        detail = client.get(f"/api/v1/tickets/{ticket_id}", headers=auth).json()
        assert detail["interactions"][-1]["delivery_state"] == "sent"
        assert detail["status"] == "pending"


def test_relay_answering_451_defers_and_the_sweep_sends_it_when_the_relay_accepts(db, job_settings, clock_at):
    ticket_id, agent_id, _token = setup_ticket(db)
    with running_sink() as sink:
        settings = job_settings(smtp_relay_url=sink.url())
        outbound_id = queue_committed_reply(db, settings, ticket_id, agent_id)
        get_queue().empty()

        sink.handler.rcpt_reply = "451 4.3.0 Try again later"
        clock_at(NOW)
        assert jobs.send_outbound_email(outbound_id) == {"status": "deferred", "attempts": 1}
        deferred = load(db, outbound_id)
        assert deferred.state is OutboundState.DEFERRED
        assert deferred.next_attempt_at == NOW + timedelta(minutes=1)
        assert "451 4.3.0 Try again later" in deferred.last_error
        assert sink.handler.received == []

        sink.handler.rcpt_reply = None
        clock_at(NOW + timedelta(seconds=30))
        assert jobs.sweep_due_outbound() == 0  # not due yet
        clock_at(NOW + timedelta(minutes=2))
        assert jobs.sweep_due_outbound() == 1
        queue = get_queue()
        assert queued_functions() == [SEND_DUE_JOB]
        SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)

        sent = load(db, outbound_id)
        assert sent.state is OutboundState.SENT
        assert sent.attempts == 2
        assert sent.last_error is None
        [received] = sink.handler.received
        assert received.rcpt_tos == ["jana@example.cz"]
        assert received.mail_from == "support@localhost"
        parsed = email.message_from_bytes(received.data, policy=email.policy.default)
        assert parsed["Message-ID"] == f"<{sent.message_id}>"


def test_relay_answering_550_fails_the_reply_reopens_the_ticket_and_tells_the_assignee(
    db, job_settings, clock_at
):
    ticket_id, agent_id, _token = setup_ticket(db)
    with running_sink() as sink:
        settings = job_settings(smtp_relay_url=sink.url())
        outbound_id = queue_committed_reply(db, settings, ticket_id, agent_id)
        with db() as session:
            assert session.get(Ticket, ticket_id).status is TicketStatus.PENDING

        sink.handler.rcpt_reply = "550 5.1.1 No such user here"
        clock_at(NOW + timedelta(minutes=1))
        assert jobs.send_outbound_email(outbound_id) == {"status": "failed", "attempts": 1}

        failed = load(db, outbound_id)
        assert failed.state is OutboundState.FAILED
        with db() as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket.status is TicketStatus.OPEN
            note = ticket.interactions[-1]
            assert note.channel is Channel.NOTE
            assert "550 5.1.1 No such user here" in note.text
            notification = session.scalar(
                select(OutboundEmail).where(OutboundEmail.kind == OutboundKind.NOTIFICATION)
            )
            assert notification.to_addresses == ["petr@centrala.test"]
            reply_interaction = session.scalar(
                select(Interaction).where(Interaction.external_id == failed.message_id)
            )
            assert reply_interaction.delivery_state is OutboundState.FAILED

        sink.handler.rcpt_reply = None
        assert jobs.send_outbound_email(notification.id) == {"status": "sent", "attempts": 1}
        [received] = sink.handler.received
        assert received.rcpt_tos == ["petr@centrala.test"]
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        assert message["Auto-Submitted"] == "auto-generated"
        assert f"[#{ticket.number}]" in message["Subject"]


def test_two_jobs_for_one_message_send_it_once(db, job_settings, clock_at):
    ticket_id, agent_id, _token = setup_ticket(db)
    with running_sink() as sink:
        settings = job_settings(smtp_relay_url=sink.url())
        outbound_id = queue_committed_reply(db, settings, ticket_id, agent_id)
        original = sink.handler.handle_DATA

        async def slow_data(server, session, envelope):
            await asyncio.sleep(0.5)
            return await original(server, session, envelope)

        sink.handler.handle_DATA = slow_data
        clock_at(NOW + timedelta(minutes=1))
        results: list[dict[str, object]] = []
        threads = [
            threading.Thread(target=lambda: results.append(jobs.send_outbound_email(outbound_id)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        assert sorted(result["status"] for result in results) == ["not due", "sent"]
        assert len(sink.handler.received) == 1


def test_drain_sends_a_burst_over_one_relay_connection_and_each_row_once(db, job_settings, clock_at):
    """The acknowledgements of a burst of new tickets: one drain, one connection to the relay, every message
    delivered once even with two drains running side by side."""
    ticket_id, agent_id, _token = setup_ticket(db)
    with running_sink() as sink:
        settings = job_settings(smtp_relay_url=sink.url())
        ids = [queue_committed_reply(db, settings, ticket_id, agent_id) for _ in range(25)]
        clock_at(NOW)
        results: list[dict[str, int]] = []
        drains = [
            threading.Thread(target=lambda: results.append(jobs.send_due_outbound_emails())) for _ in range(2)
        ]
        for drain in drains:
            drain.start()
        for drain in drains:
            drain.join(60)

        assert sum(result.get("sent", 0) for result in results) == 25
        with db() as session:
            states = session.scalars(select(OutboundEmail.state).where(OutboundEmail.id.in_(ids))).all()
        assert states == [OutboundState.SENT] * 25
        received = sink.handler.received
        assert sorted(parse_id(mail) for mail in received) == sorted(load(db, i).message_id for i in ids)
        # Two drains at most, each over one connection (and a new one only if the relay closed it).
        assert len({mail.peer for mail in received}) <= 2


def parse_id(mail) -> str:
    return email.message_from_bytes(mail.data, policy=email.policy.default)["Message-ID"].strip("<>")


def test_drain_out_of_time_gives_back_the_rest_of_its_batch_and_queues_another(db, job_settings, clock_at):
    """A drain past its time begins no further message (a slow relay must not keep it past its job timeout,
    when its lease would send what it had sent again): the rest are due again at once, their claim's attempt
    uncounted, and a fresh drain is queued for them."""
    settings = job_settings(ingest_drain_seconds=0.001)
    ticket_id, agent_id, _token = setup_ticket(db)
    ids = [queue_committed_reply(db, settings, ticket_id, agent_id) for _ in range(3)]
    get_queue().empty()
    clock_at(NOW)

    assert jobs.send_due_outbound_emails() == {"sent": 1}

    rows = [load(db, outbound_id) for outbound_id in ids]
    assert [(row.state, row.attempts) for row in rows] == [
        (OutboundState.SENT, 1),
        (OutboundState.QUEUED, 0),
        (OutboundState.QUEUED, 0),
    ]
    assert all(row.next_attempt_at == NOW for row in rows[1:])
    assert queued_functions() == [SEND_DUE_JOB]
    assert jobs.send_due_outbound_emails() == {"sent": 1}
