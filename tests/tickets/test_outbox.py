"""The outbox: replies and acknowledgements queued as composed mail, delivery states, bounces, rate limits."""

from __future__ import annotations

import email
import email.policy
import mailbox
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from centrala.core.errors import (
    DeliveryError,
    HeaderInjectionError,
    InvalidInputError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from centrala.core.settings import get_settings
from centrala.ingest.ledger import record_inbound_email
from centrala.ingest.process import process_inbound_email
from centrala.mail.send import MaildirTransport
from centrala.mail.tokens import verify_message_id, verify_reply_address
from centrala.tickets.models import (
    OUTBOUND_TRANSITIONS,
    Channel,
    ContactEmail,
    Direction,
    Interaction,
    OutboundEmail,
    OutboundKind,
    OutboundState,
    Ticket,
    TicketStatus,
)
from centrala.tickets.outbox import (
    MAX_ATTEMPTS,
    RETRY_MINUTES,
    SEND_DUE_JOB,
    SEND_LEASE,
    claim_outbound_email,
    find_due_outbound,
    mark_bounced,
    queue_acknowledgement,
    queue_reply,
    record_delivery_attempt,
    transition_outbound,
)
from tests.factories import NOW, make_agent, make_contact, make_interaction, make_ticket
from tests.support.mails import make_mail

PENDING_JOBS = "centrala.pending_jobs"


@pytest.fixture()
def settings():
    return get_settings().model_copy(
        update={
            "mailboxes": ["support@localhost", "sales@localhost"],
            "public_url": "https://help.example.com/",
            "ack_max_per_recipient": 3,
            "ack_window_minutes": 60,
        }
    )


@pytest.fixture()
def agent(session):
    return make_agent(session, email="petr@centrala.test", name="Petr Dvořák")[0]


def parsed(outbound: OutboundEmail) -> EmailMessage:
    return email.message_from_bytes(outbound.raw, policy=email.policy.default)


def pending_send_jobs(session) -> list[int]:
    """The outbox rows that the drain queued for this transaction's commit will send (none without a drain)."""
    if not any(job.func == SEND_DUE_JOB for job in session.info.get(PENDING_JOBS, [])):
        return []
    waiting = OutboundEmail.state.in_([OutboundState.QUEUED, OutboundState.DEFERRED])
    return list(session.scalars(select(OutboundEmail.id).where(waiting).order_by(OutboundEmail.id)))


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def customer_ticket(
    session, *, language="cs", emails=None, name="Jana Nováková", mailbox="support@localhost"
):
    contact = make_contact(session, name=name, emails=emails or ["jana@example.cz"], language=language)
    ticket = make_ticket(session, contact=contact, subject="Nefunguje mi přihlášení", mailbox=mailbox)
    first = make_interaction(
        session,
        ticket=ticket,
        external_id="m1@example.cz",
        author_address=contact.emails[0].address,
        author_name=name,
    )
    return ticket, first


def reply(session, ticket, agent, settings, *, text="Zkuste to prosím znovu.", html=None, now=NOW):
    return queue_reply(
        session=session, ticket=ticket, agent=agent, text=text, html=html, now=now, settings=settings
    )


def acknowledge(session, ticket, interaction, settings, *, now=NOW, automated=False, envelope_sender=None):
    outbound = queue_acknowledgement(
        session=session,
        ticket=ticket,
        interaction=interaction,
        automated=automated,
        now=now,
        settings=settings,
        envelope_sender=envelope_sender,
    )
    # The acknowledgement is written with the message it answers, by the caller's flush (the drain's).
    session.flush()
    return outbound


def deliver(session, outbound: OutboundEmail, settings, *, error: DeliveryError | None = None, now=NOW):
    """One attempt, as the job makes it: claim, (send), record."""
    claimed = claim_outbound_email(session=session, outbound_id=outbound.id, now=now)
    assert claimed is not None, "the row was not due"
    return record_delivery_attempt(
        session=session, outbound_id=outbound.id, error=error, now=now, settings=settings
    )


# --- Replies ------------------------------------------------------------------------------------------------


def test_reply_is_recorded_and_queued_with_signed_threading_headers(session, agent, settings):
    ticket, _first = customer_ticket(session)
    make_interaction(
        session,
        ticket=ticket,
        external_id="m2@example.cz",
        author_address="jana@example.cz",
        occurred_at=NOW + timedelta(minutes=1),
    )

    outbound = reply(
        session, ticket, agent, settings, html="<p>Zkuste to <b>znovu</b>.</p>", now=NOW + timedelta(hours=1)
    )

    assert outbound.state is OutboundState.QUEUED
    assert outbound.kind is OutboundKind.REPLY
    assert outbound.to_addresses == ["jana@example.cz"]
    assert outbound.mail_from == "support@localhost"
    assert outbound.next_attempt_at == NOW + timedelta(hours=1)
    interaction = outbound.interaction
    assert interaction.direction is Direction.OUTBOUND and interaction.channel is Channel.EMAIL
    assert interaction.delivery_state is OutboundState.QUEUED
    assert interaction.external_id == outbound.message_id
    assert verify_message_id(outbound.message_id, settings.secret_key.get_secret_value()) == ticket.id
    assert ticket.status is TicketStatus.PENDING
    assert pending_send_jobs(session) == [outbound.id]

    message = parsed(outbound)
    assert message["Message-ID"] == f"<{outbound.message_id}>"
    assert message["From"].addresses[0].display_name == "Support"
    assert message["From"].addresses[0].addr_spec == "support@localhost"
    assert str(message["To"]) == "Jana Nováková <jana@example.cz>"
    assert message["Subject"] == f"Re: Nefunguje mi přihlášení [#{ticket.number}]"
    assert message["In-Reply-To"] == "<m2@example.cz>"
    assert message["References"].split() == ["<m1@example.cz>", "<m2@example.cz>"]
    assert message["Auto-Submitted"] is None
    reply_to = message["Reply-To"].addresses[0].addr_spec
    assert verify_reply_address(reply_to, settings.secret_key.get_secret_value()) == (
        "support@localhost",
        ticket.id,
    )
    plain = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    # The agent's words, then where the customer follows the case (every e-mail to the customer has it).
    assert plain.startswith("Zkuste to prosím znovu.\n\n--\n")
    assert f"/portal/tickets/{ticket.number}" in plain
    assert outbound.interaction.text == "Zkuste to prosím znovu."
    assert "<b>znovu</b>" in message.get_body(("html",)).get_content()


def test_second_reply_references_the_first(session, agent, settings):
    ticket, _first = customer_ticket(session)
    earlier = reply(session, ticket, agent, settings)
    later = reply(session, ticket, agent, settings, now=NOW + timedelta(minutes=5))
    assert parsed(later)["References"].split() == ["<m1@example.cz>", f"<{earlier.message_id}>"]
    assert parsed(later)["In-Reply-To"] == "<m1@example.cz>"
    assert earlier.message_id != later.message_id


def test_reply_goes_to_the_address_the_customer_last_wrote_from(session, agent, settings):
    ticket, _first = customer_ticket(session, emails=["jana@example.cz", "jana@work.example"])
    make_interaction(
        session,
        ticket=ticket,
        external_id="m2@work.example",
        author_address="jana@work.example",
        occurred_at=NOW + timedelta(minutes=1),
    )
    assert reply(session, ticket, agent, settings).to_addresses == ["jana@work.example"]


def test_reply_skips_an_undeliverable_address(session, agent, settings):
    ticket, _first = customer_ticket(session, emails=["jana@example.cz", "jana@work.example"])
    ticket.contact.emails[0].undeliverable_at = NOW
    assert reply(session, ticket, agent, settings).to_addresses == ["jana@work.example"]


def test_reply_to_a_contact_without_deliverable_address_is_refused_and_records_nothing(
    session, agent, settings
):
    ticket, _first = customer_ticket(session)
    ticket.contact.emails[0].undeliverable_at = NOW
    before = count(session, Interaction)
    with pytest.raises(InvalidInputError):
        reply(session, ticket, agent, settings)
    assert count(session, Interaction) == before
    assert count(session, OutboundEmail) == 0


@pytest.mark.parametrize("name", ["Jana\r\nBcc: victim@example.org", "Jana\nX-Evil: 1", "Jana\x0b"])
def test_reply_with_line_break_in_a_header_value_is_refused_and_queues_nothing(
    session, agent, settings, name
):
    ticket, _first = customer_ticket(session, name=name)
    before = count(session, Interaction)
    with pytest.raises(HeaderInjectionError):
        reply(session, ticket, agent, settings)
    assert count(session, Interaction) == before
    assert count(session, OutboundEmail) == 0
    assert pending_send_jobs(session) == []
    assert ticket.status is TicketStatus.NEW


def test_reply_on_a_ticket_without_mailbox_comes_from_the_first_configured_one(session, agent, settings):
    ticket, _first = customer_ticket(session, mailbox=None)
    outbound = reply(session, ticket, agent, settings)
    assert outbound.mailbox == "support@localhost"
    assert parsed(outbound)["From"].addresses[0].addr_spec == "support@localhost"


def test_reply_comes_from_the_mailbox_the_ticket_came_in_on(session, agent, settings):
    ticket, _first = customer_ticket(session, mailbox="sales@localhost")
    message = parsed(reply(session, ticket, agent, settings))
    assert message["From"].addresses[0].addr_spec == "sales@localhost"
    assert message["Reply-To"].addresses[0].addr_spec.startswith("sales+t")


# --- Acknowledgements ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "phrase"),
    [
        ("cs", "Váš požadavek jsme zaevidovali pod číslem {number}"),
        ("cs-CZ", "Dobrý den,"),
        ("pl", "zostało zarejestrowane pod numerem {number}"),
        ("uk", "Ваше звернення зареєстровано під номером {number}"),
        ("en", "We have registered your request under number {number}"),
        ("de", "We have registered your request under number {number}"),
        (None, "Hello,"),
    ],
)
def test_acknowledgement_speaks_the_contacts_language(session, settings, language, phrase):
    ticket, first = customer_ticket(session, language=language)
    outbound = acknowledge(session, ticket, first, settings)
    text = parsed(outbound).get_content()
    assert phrase.format(number=ticket.number) in text
    assert f"https://help.example.com/portal/tickets/{ticket.number}" in text


def test_acknowledgement_is_auto_replied_threaded_and_on_the_timeline(session, settings):
    ticket, first = customer_ticket(session)
    outbound = acknowledge(session, ticket, first, settings)

    message = parsed(outbound)
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["In-Reply-To"] == "<m1@example.cz>"
    assert message["Subject"] == f"Re: Nefunguje mi přihlášení [#{ticket.number}]"
    assert message["From"].addresses[0].addr_spec == "support@localhost"
    assert message["To"].addresses[0].addr_spec == "jana@example.cz"
    assert verify_message_id(message["Message-ID"], settings.secret_key.get_secret_value()) == ticket.id
    assert outbound.kind is OutboundKind.ACKNOWLEDGEMENT
    assert outbound.interaction.delivery_state is OutboundState.QUEUED
    assert outbound.interaction.external_id == outbound.message_id
    assert ticket.status is TicketStatus.NEW
    assert pending_send_jobs(session) == [outbound.id]


def test_custom_template_of_a_mailbox_is_used(session, settings, tmp_path):
    folder = tmp_path / "support@localhost"
    folder.mkdir()
    (folder / "acknowledgement.cs.txt").write_text(
        "Díky! Číslo: $number, odkaz $portal_url, $unknown", "utf-8"
    )
    ticket, first = customer_ticket(session)
    outbound = acknowledge(
        session, ticket, first, settings.model_copy(update={"mail_template_dir": tmp_path})
    )
    portal = f"https://help.example.com/portal/tickets/{ticket.number}"
    assert parsed(outbound).get_content().strip() == f"Díky! Číslo: {ticket.number}, odkaz {portal}, $unknown"


@pytest.mark.parametrize(
    ("sender", "automated", "envelope_sender"),
    [
        ("jana@example.cz", True, "jana@example.cz"),
        ("jana@example.cz", False, ""),
        ("jana@example.cz", False, "<>"),
        ("mailer-daemon@example.cz", False, None),
        ("postmaster@example.cz", False, None),
        ("no-reply@example.cz", False, None),
        ("noreply@example.cz", False, None),
        ("newsletter-bounces@example.cz", False, None),
        ("owner-list@example.cz", False, None),
        ("support@localhost", False, None),
        ("support+t1-abc@localhost", False, None),
    ],
)
def test_no_acknowledgement_to_automated_mail_null_senders_or_ourselves(
    session, settings, sender, automated, envelope_sender
):
    ticket, first = customer_ticket(session, emails=[sender])
    assert (
        acknowledge(session, ticket, first, settings, automated=automated, envelope_sender=envelope_sender)
        is None
    )
    assert count(session, OutboundEmail) == 0
    assert pending_send_jobs(session) == []


def test_no_acknowledgement_to_an_undeliverable_address_or_when_switched_off(session, settings):
    ticket, first = customer_ticket(session)
    assert acknowledge(session, ticket, first, settings.model_copy(update={"ack_enabled": False})) is None
    ticket.contact.emails[0].undeliverable_at = NOW
    assert acknowledge(session, ticket, first, settings) is None


def test_a_ticket_is_acknowledged_once(session, settings):
    ticket, first = customer_ticket(session)
    assert acknowledge(session, ticket, first, settings) is not None
    second = make_interaction(
        session, ticket=ticket, external_id="m2@example.cz", author_address="jana@example.cz"
    )
    assert acknowledge(session, ticket, second, settings, now=NOW + timedelta(days=2)) is None


def test_acknowledgements_to_one_recipient_are_limited_per_window(session, settings):
    contact = make_contact(session, emails=["jana@example.cz"])

    def new_ticket_at(minutes: int):
        ticket = make_ticket(session, contact=contact)
        first = make_interaction(session, ticket=ticket, author_address="jana@example.cz")
        return acknowledge(session, ticket, first, settings, now=NOW + timedelta(minutes=minutes))

    assert all(new_ticket_at(minutes) is not None for minutes in (0, 10, 20))
    assert new_ticket_at(30) is None
    assert new_ticket_at(59) is None
    assert new_ticket_at(61) is not None  # the first one has left the 60-minute window


def test_ping_pong_with_an_unmarked_auto_responder_ends_within_the_limit(session, settings, blobs, tmp_path):
    """An auto-responder answers everything we send with a new message (no Auto-Submitted, no reference,
    a fresh subject), so each answer opens a new ticket; our acknowledgements stop at the recipient limit."""
    transport = MaildirTransport(tmp_path / "outbox")
    maildir = mailbox.Maildir(tmp_path / "outbox", create=True)
    seen: set[str] = set()
    now = NOW
    to_process = [
        make_mail(sender="Bot <bot@example.net>", subject="Hello", message_id="<bot-0@example.net>")
    ]
    rounds = 0
    while to_process and rounds < 20:
        rounds += 1
        now += timedelta(minutes=1)
        for raw in to_process:
            recorded = record_inbound_email(
                session=session,
                raw=raw,
                mailbox="support@localhost",
                mail_from="bot@example.net",
                rcpt_tos=["support@localhost"],
                now=now,
                blobs=blobs,
            )
            outcome = process_inbound_email(session=session, inbound_id=recorded.id, now=now, blobs=blobs, settings=settings)
            ticket = session.get(Ticket, outcome.ticket_id)
            interaction = session.get(Interaction, outcome.interaction_id)
            acknowledge(session, ticket, interaction, settings, now=now, envelope_sender="bot@example.net")
        _send_all(session, transport, settings, now)
        to_process = []
        for key in sorted(set(maildir.keys()) - seen):
            seen.add(key)
            ours = email.message_from_bytes(maildir.get_bytes(key), policy=email.policy.default)
            if "bot@example.net" in ours.get_all("Delivered-To", []):
                to_process.append(
                    make_mail(
                        sender="Bot <bot@example.net>",
                        subject=f"I am away until Monday ({rounds})",
                        message_id=f"<bot-{rounds}-{key}@example.net>",
                    )
                )

    acknowledgements = session.scalars(
        select(OutboundEmail).where(OutboundEmail.kind == OutboundKind.ACKNOWLEDGEMENT)
    ).all()
    assert len(acknowledgements) == settings.ack_max_per_recipient
    assert len(seen) == settings.ack_max_per_recipient
    assert to_process == []


def test_ping_pong_with_a_threading_auto_responder_ends_after_one_acknowledgement(
    session, settings, blobs, tmp_path
):
    transport = MaildirTransport(tmp_path / "outbox")
    maildir = mailbox.Maildir(tmp_path / "outbox", create=True)
    seen: set[str] = set()
    now = NOW
    to_process = [make_mail(sender="bot@example.net", subject="Hello", message_id="<bot-0@example.net>")]
    for round_number in range(1, 20):
        if not to_process:
            break
        now += timedelta(minutes=1)
        for raw in to_process:
            recorded = record_inbound_email(
                session=session,
                raw=raw,
                mailbox="support@localhost",
                mail_from="bot@example.net",
                rcpt_tos=["support@localhost"],
                now=now,
                blobs=blobs,
            )
            outcome = process_inbound_email(session=session, inbound_id=recorded.id, now=now, blobs=blobs, settings=settings)
            acknowledge(
                session,
                session.get(Ticket, outcome.ticket_id),
                session.get(Interaction, outcome.interaction_id),
                settings,
                now=now,
            )
        _send_all(session, transport, settings, now)
        to_process = []
        for key in sorted(set(maildir.keys()) - seen):
            seen.add(key)
            ours = email.message_from_bytes(maildir.get_bytes(key), policy=email.policy.default)
            to_process.append(
                make_mail(
                    sender="bot@example.net",
                    subject=f"Re: {ours['Subject']}",
                    message_id=f"<bot-{round_number}@example.net>",
                    in_reply_to=ours["Message-ID"],
                    references=ours["Message-ID"],
                )
            )
    assert count(session, OutboundEmail) == 1
    assert count(session, Ticket) == 1


def _send_all(session, transport, settings, now):
    for outbound_id in session.scalars(
        select(OutboundEmail.id).where(OutboundEmail.state == OutboundState.QUEUED)
    ).all():
        claimed = claim_outbound_email(session=session, outbound_id=outbound_id, now=now)
        transport.send(raw=claimed.raw, mail_from=claimed.mail_from, rcpt_tos=claimed.rcpt_tos)
        record_delivery_attempt(
            session=session, outbound_id=outbound_id, error=None, now=now, settings=settings
        )


# --- States and attempts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", list(OutboundState))
@pytest.mark.parametrize("target", list(OutboundState))
def test_only_the_listed_transitions_happen(session, agent, settings, source, target):
    ticket, _first = customer_ticket(session)
    outbound = reply(session, ticket, agent, settings)
    outbound.state = source
    changed = transition_outbound(outbound=outbound, to=target, now=NOW)
    assert changed is (target in OUTBOUND_TRANSITIONS[source])
    assert outbound.state is (target if changed else source)


def test_bounced_and_failed_are_terminal_and_sent_can_only_bounce():
    assert OUTBOUND_TRANSITIONS[OutboundState.BOUNCED] == frozenset()
    assert OUTBOUND_TRANSITIONS[OutboundState.FAILED] == frozenset()
    assert OUTBOUND_TRANSITIONS[OutboundState.SENT] == {OutboundState.BOUNCED}


def test_a_row_is_claimed_once_per_attempt(session, agent, settings):
    ticket, _first = customer_ticket(session)
    outbound = reply(session, ticket, agent, settings)
    claimed = claim_outbound_email(session=session, outbound_id=outbound.id, now=NOW)
    assert claimed is not None
    assert claimed.rcpt_tos == ["jana@example.cz"]
    assert claimed.mail_from == "support@localhost"
    assert claimed.raw == outbound.raw
    assert claimed.attempt == 1
    assert claim_outbound_email(session=session, outbound_id=outbound.id, now=NOW) is None
    # A worker that died mid-send: after the lease the row is due again.
    again = claim_outbound_email(session=session, outbound_id=outbound.id, now=NOW + SEND_LEASE)
    assert again is not None and again.attempt == 2


def test_a_row_not_yet_due_or_already_sent_is_not_claimed(session, agent, settings):
    ticket, _first = customer_ticket(session)
    outbound = reply(session, ticket, agent, settings, now=NOW)
    assert (
        claim_outbound_email(session=session, outbound_id=outbound.id, now=NOW - timedelta(seconds=1)) is None
    )
    deliver(session, outbound, settings)
    assert outbound.state is OutboundState.SENT
    assert claim_outbound_email(session=session, outbound_id=outbound.id, now=NOW + timedelta(days=1)) is None
    assert claim_outbound_email(session=session, outbound_id=999_999, now=NOW) is None


def test_successful_attempt_marks_sent(session, agent, settings):
    ticket, _first = customer_ticket(session)
    outbound = reply(session, ticket, agent, settings)
    deliver(session, outbound, settings, now=NOW + timedelta(seconds=5))
    assert outbound.state is OutboundState.SENT
    assert outbound.sent_at == NOW + timedelta(seconds=5)
    assert outbound.next_attempt_at is None
    assert outbound.attempts == 1
    assert outbound.interaction.delivery_state is OutboundState.SENT


def test_transient_failures_back_off_and_finally_fail(session, agent, settings):
    ticket, _first = customer_ticket(session)
    ticket.assignee = agent
    outbound = reply(session, ticket, agent, settings)
    now = NOW
    for attempt, minutes in enumerate(RETRY_MINUTES, start=1):
        deliver(session, outbound, settings, error=TransientDeliveryError("451 4.3.0 later", 451), now=now)
        assert outbound.state is OutboundState.DEFERRED
        assert outbound.attempts == attempt
        assert outbound.next_attempt_at == now + timedelta(minutes=minutes)
        assert "451 4.3.0 later" in outbound.last_error
        assert claim_outbound_email(session=session, outbound_id=outbound.id, now=now) is None
        now = outbound.next_attempt_at
    deliver(session, outbound, settings, error=TransientDeliveryError("451 4.3.0 later", 451), now=now)
    assert outbound.attempts == MAX_ATTEMPTS
    assert outbound.state is OutboundState.FAILED
    assert outbound.next_attempt_at is None
    assert ticket.status is TicketStatus.OPEN


def test_permanent_failure_reopens_the_ticket_notes_it_and_tells_the_assignee(session, agent, settings):
    ticket, _first = customer_ticket(session)
    ticket.assignee = agent
    outbound = reply(session, ticket, agent, settings)
    assert ticket.status is TicketStatus.PENDING

    deliver(
        session,
        outbound,
        settings,
        error=PermanentDeliveryError("550 5.1.1 No such user", 550),
        now=NOW + timedelta(minutes=1),
    )

    assert outbound.state is OutboundState.FAILED
    assert outbound.attempts == 1
    assert "550 5.1.1 No such user" in outbound.last_error
    assert ticket.status is TicketStatus.OPEN
    note = ticket.interactions[-1]
    assert note.channel is Channel.NOTE and note.direction is Direction.INTERNAL
    assert note.author_name == "Centrala"
    assert "jana@example.cz" in note.text and "550 5.1.1" in note.text
    notification = session.scalar(
        select(OutboundEmail).where(OutboundEmail.kind == OutboundKind.NOTIFICATION)
    )
    assert notification.to_addresses == ["petr@centrala.test"]
    assert notification.interaction_id == note.id
    message = parsed(notification)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Subject"].startswith(f"[#{ticket.number}] Reply not delivered")
    assert pending_send_jobs(session) == [notification.id]


def test_failed_notification_or_acknowledgement_does_not_reopen_anything(session, agent, settings):
    ticket, first = customer_ticket(session)
    ticket.status = TicketStatus.RESOLVED
    outbound = acknowledge(session, ticket, first, settings)
    deliver(session, outbound, settings, error=PermanentDeliveryError("550 no", 550))
    assert outbound.state is OutboundState.FAILED
    assert ticket.status is TicketStatus.RESOLVED
    assert count(session, OutboundEmail) == 1


def test_late_attempt_results_do_not_change_a_final_state(session, agent, settings):
    ticket, _first = customer_ticket(session)
    outbound = reply(session, ticket, agent, settings)
    deliver(session, outbound, settings, error=PermanentDeliveryError("550 no", 550))
    notes = count(session, Interaction)
    record_delivery_attempt(session=session, outbound_id=outbound.id, error=None, now=NOW, settings=settings)
    assert outbound.state is OutboundState.FAILED
    assert count(session, Interaction) == notes


def test_sweep_hands_out_due_retries_and_lost_jobs_once_per_grace(session, agent, settings):
    ticket, _first = customer_ticket(session)
    fresh = reply(session, ticket, agent, settings, now=NOW)
    waiting = reply(session, ticket, agent, settings, now=NOW)
    deliver(session, waiting, settings, error=TransientDeliveryError("451 later", 451), now=NOW)
    session.info.pop(PENDING_JOBS, None)
    grace = timedelta(seconds=60)

    assert find_due_outbound(session=session, now=NOW + timedelta(seconds=30), grace=grace) == []
    due = find_due_outbound(session=session, now=NOW + timedelta(minutes=1), grace=grace)
    assert due == [fresh.id, waiting.id]
    assert pending_send_jobs(session) == due
    # Handed out: not again until the grace has passed (the worker may just be busy).
    assert find_due_outbound(session=session, now=NOW + timedelta(minutes=1, seconds=30), grace=grace) == []
    assert find_due_outbound(session=session, now=NOW + timedelta(minutes=2), grace=grace) == due


# --- Bounces ------------------------------------------------------------------------------------------------


def test_permanent_bounce_of_a_sent_reply_reopens_and_marks_the_address(session, agent, settings):
    ticket, _first = customer_ticket(session)
    ticket.assignee = agent
    outbound = reply(session, ticket, agent, settings)
    deliver(session, outbound, settings)
    ticket.status = TicketStatus.RESOLVED

    result = mark_bounced(
        session=session,
        message_id=f"<{outbound.message_id}>",
        permanent=True,
        recipients=["Jana@Example.cz"],
        now=NOW + timedelta(hours=1),
        settings=settings,
        diagnostic="550 5.1.1 user unknown\r\n",
    )

    assert result is outbound
    assert outbound.state is OutboundState.BOUNCED
    assert outbound.last_error == "bounced: 550 5.1.1 user unknown"
    assert outbound.interaction.delivery_state is OutboundState.BOUNCED
    assert ticket.status is TicketStatus.OPEN
    assert ticket.interactions[-1].channel is Channel.NOTE
    address = session.scalar(select(ContactEmail).where(ContactEmail.address == "jana@example.cz"))
    assert address.undeliverable_at == NOW + timedelta(hours=1)
    assert count(session, OutboundEmail) == 2  # the reply and the assignee's notification

    interactions = count(session, Interaction)
    mark_bounced(
        session=session,
        message_id=outbound.message_id,
        permanent=True,
        recipients=["jana@example.cz"],
        now=NOW + timedelta(hours=2),
        settings=settings,
    )
    assert count(session, Interaction) == interactions
    assert count(session, OutboundEmail) == 2


def test_transient_dsn_only_notes_the_delay(session, agent, settings):
    ticket, _first = customer_ticket(session)
    outbound = reply(session, ticket, agent, settings)
    deliver(session, outbound, settings)
    mark_bounced(
        session=session,
        message_id=outbound.message_id,
        permanent=False,
        recipients=["jana@example.cz"],
        now=NOW,
        settings=settings,
        diagnostic="4.4.1 no answer from host",
    )
    assert outbound.state is OutboundState.SENT
    assert outbound.last_error == "delayed: 4.4.1 no answer from host"
    assert ticket.contact.emails[0].undeliverable_at is None


def test_bounce_for_a_cc_only_marks_that_address(session, agent, settings):
    ticket, _first = customer_ticket(session)
    outbound = queue_reply(
        session=session,
        ticket=ticket,
        agent=agent,
        text="Hi",
        html=None,
        now=NOW,
        settings=settings,
        cc=["boss@example.cz"],
    )
    boss = make_contact(session, emails=["boss@example.cz"])
    assert parsed(outbound)["Cc"].addresses[0].addr_spec == "boss@example.cz"
    deliver(session, outbound, settings)
    mark_bounced(
        session=session,
        message_id=outbound.message_id,
        permanent=True,
        recipients=["boss@example.cz"],
        now=NOW,
        settings=settings,
    )
    assert outbound.state is OutboundState.SENT
    assert boss.emails[0].undeliverable_at == NOW
    assert ticket.contact.emails[0].undeliverable_at is None


def test_bounce_names_only_addresses_the_message_went_to(session, agent, settings):
    ticket, _first = customer_ticket(session)
    stranger = make_contact(session, emails=["stranger@example.org"])
    outbound = reply(session, ticket, agent, settings)
    deliver(session, outbound, settings)
    mark_bounced(
        session=session,
        message_id=outbound.message_id,
        permanent=True,
        recipients=["stranger@example.org"],
        now=NOW,
        settings=settings,
    )
    assert stranger.emails[0].undeliverable_at is None
    assert outbound.state is OutboundState.SENT


def test_bounce_for_a_message_that_is_not_ours_is_ignored(session, settings):
    assert (
        mark_bounced(
            session=session,
            message_id="<m1@example.cz>",
            permanent=True,
            recipients=[],
            now=NOW,
            settings=settings,
        )
        is None
    )


# --- The API shows delivery states --------------------------------------------------------------------------


def test_ticket_detail_shows_each_interactions_delivery_state(client, session, agent, settings):
    from centrala.tickets.agents import rotate_token

    token = rotate_token(session=session, agent=agent)
    ticket, first = customer_ticket(session)
    outbound = reply(session, ticket, agent, settings)
    deliver(session, outbound, settings, error=PermanentDeliveryError("550 no", 550))

    detail = client.get(f"/api/v1/tickets/{ticket.id}", headers={"Authorization": f"Bearer {token}"}).json()

    states = {item["id"]: item["delivery_state"] for item in detail["interactions"]}
    assert states[first.id] is None
    assert states[outbound.interaction_id] == "failed"
    assert detail["status"] == "open"


def test_reply_attachments_are_sent_and_kept_on_the_timeline(session, agent, settings, tmp_path):
    from centrala.core.blobs import BlobStore
    from centrala.mail.compose import OutboundAttachment

    settings = settings.model_copy(update={"var_dir": tmp_path})
    ticket, _first = customer_ticket(session)
    outbound = queue_reply(
        session=session,
        ticket=ticket,
        agent=agent,
        text="Posílám fakturu.",
        html=None,
        now=NOW,
        settings=settings,
        attachments=[OutboundAttachment("faktura.pdf", "application/pdf", b"%PDF-1.4 x")],
    )
    [attachment] = outbound.interaction.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "faktura.pdf",
        "application/pdf",
        10,
    )
    assert BlobStore(settings.blob_dir).get(attachment.sha256) == b"%PDF-1.4 x"
    [part] = list(parsed(outbound).iter_attachments())
    assert part.get_filename() == "faktura.pdf"
    assert part.get_content() == b"%PDF-1.4 x"


def test_api_reply_with_a_header_injection_answers_422_and_queues_nothing(client, session, agent):
    from centrala.tickets.agents import rotate_token

    token = rotate_token(session=session, agent=agent)
    ticket, _first = customer_ticket(session, name="Jana\r\nBcc: victim@example.org")
    before = count(session, Interaction)

    response = client.post(
        f"/api/v1/tickets/{ticket.id}/replies",
        json={"text": "Hi"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 422
    assert "header" in response.json()["detail"]
    session.expire_all()
    assert count(session, Interaction) == before
    assert count(session, OutboundEmail) == 0
    assert session.get(Ticket, ticket.id).status is TicketStatus.NEW
