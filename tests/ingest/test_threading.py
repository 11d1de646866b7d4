"""Where inbound mail lands: signed references and reply addresses, participants only, closed tickets,
automated mail, bounces, reused Message-IDs and reps' own mail logged through the log address."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from centrala.core.settings import get_settings
from centrala.ingest.ledger import record_inbound_email
from centrala.ingest.models import InboundStatus
from centrala.ingest.process import FLAG_REUSED_MESSAGE_ID, process_inbound_email
from centrala.mail.tokens import make_message_id, make_reply_address
from centrala.tickets.models import (
    Channel,
    ClockState,
    ContactEmail,
    Direction,
    Interaction,
    OutboundEmail,
    OutboundKind,
    OutboundState,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    Ticket,
    TicketStatus,
)
from centrala.tickets.outbox import queue_reply
from centrala.tickets.tickets import ThreadReason, add_interaction, find_email_thread, open_ticket
from tests.factories import make_agent, make_contact, make_interaction, make_ticket
from tests.support.mails import make_dsn, make_mail

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture()
def settings():
    return get_settings().model_copy(update={"log_mailboxes": ["log@localhost"], "reopen_within_days": 14})


@pytest.fixture()
def ingest(session, blobs, settings):
    def ingest_raw(
        raw: bytes, *, at: datetime = NOW, mailbox="support@localhost", rcpt=None, mail_from="x@y.z"
    ):
        recorded = record_inbound_email(
            session=session,
            raw=raw,
            mailbox=mailbox,
            mail_from=mail_from,
            rcpt_tos=rcpt or [mailbox],
            now=at,
            blobs=blobs,
        )
        outcome = process_inbound_email(
            session=session, inbound_id=recorded.id, now=at, blobs=blobs, settings=settings
        )
        session.flush()
        return outcome

    return ingest_raw


def secret(settings) -> str:
    return settings.secret_key.get_secret_value()


def interaction_of(session, outcome) -> Interaction:
    return session.get(Interaction, outcome.interaction_id)


def test_signed_message_id_threads_even_from_another_address(session, ingest, settings):
    first = ingest(make_mail())
    ours = make_message_id(ticket_id=first.ticket_id, nonce="n1", secret=secret(settings), domain="localhost")
    colleague = ingest(
        make_mail(
            sender="Petr <petr@example.cz>",
            subject="Re: přihlášení",
            message_id="<c1@example.cz>",
            in_reply_to=ours,
        )
    )
    assert colleague.ticket_id == first.ticket_id
    assert interaction_of(session, colleague).thread_reason == "signed-reference"


def test_forged_signed_message_id_does_not_thread(session, ingest, settings):
    first = ingest(make_mail())
    forged = make_message_id(
        ticket_id=first.ticket_id, nonce="n1", secret="someone-elses-secret", domain="localhost"
    )
    stranger = ingest(
        make_mail(sender="eve@evil.example", message_id="<e1@evil.example>", in_reply_to=forged)
    )
    assert stranger.ticket_id != first.ticket_id


def test_reply_address_threads(session, ingest, settings):
    first = ingest(make_mail())
    address = make_reply_address(
        mailbox="support@localhost", ticket_id=first.ticket_id, secret=secret(settings)
    )
    reply = ingest(
        make_mail(to=address, subject="Something else entirely", message_id="<r1@example.cz>"), rcpt=[address]
    )
    assert reply.ticket_id == first.ticket_id
    assert interaction_of(session, reply).thread_reason == "reply-address"


def test_subject_tag_accepted_from_a_cc_but_not_from_a_stranger(session, ingest):
    first = ingest(make_mail(extra_headers={"Cc": "Boss <boss@example.cz>"}))
    number = session.get(Ticket, first.ticket_id).number
    boss = ingest(
        make_mail(sender="boss@example.cz", subject=f"Re: [#{number}]", message_id="<b1@example.cz>")
    )
    assert boss.ticket_id == first.ticket_id
    stranger = ingest(
        make_mail(sender="x@other.example", subject=f"Re: [#{number}]", message_id="<x1@o.example>")
    )
    assert stranger.ticket_id != first.ticket_id
    assert interaction_of(session, stranger).thread_reason == "new-ticket:foreign-subject-tag"


def test_follow_up_reopens_a_recently_closed_ticket(session, ingest):
    first = ingest(make_mail())
    ticket = session.get(Ticket, first.ticket_id)
    ticket.status, ticket.closed_at = TicketStatus.CLOSED, NOW
    reply = ingest(
        make_mail(message_id="<m2@example.cz>", in_reply_to="<m1@example.cz>"), at=NOW + timedelta(days=13)
    )
    assert reply.ticket_id == ticket.id
    assert ticket.status == TicketStatus.OPEN


def test_follow_up_after_the_window_opens_a_linked_ticket(session, ingest):
    first = ingest(make_mail())
    old = session.get(Ticket, first.ticket_id)
    old.status, old.closed_at = TicketStatus.CLOSED, NOW
    reply = ingest(
        make_mail(message_id="<m2@example.cz>", in_reply_to="<m1@example.cz>"), at=NOW + timedelta(days=15)
    )
    new = session.get(Ticket, reply.ticket_id)
    assert new.id != old.id and new.follows_up_ticket_id == old.id
    assert old.status == TicketStatus.CLOSED
    assert interaction_of(session, reply).thread_reason == "new-ticket:follow-up"


def test_auto_reply_threads_but_neither_reopens_nor_is_acknowledged(session, ingest):
    first = ingest(make_mail())
    ticket = session.get(Ticket, first.ticket_id)
    ticket.status = TicketStatus.RESOLVED
    ooo = ingest(
        make_mail(
            subject="Automatická odpověď: Re: přihlášení",
            message_id="<ooo@example.cz>",
            in_reply_to="<m1@example.cz>",
            extra_headers={"Auto-Submitted": "auto-replied"},
        )
    )
    assert ooo.ticket_id == ticket.id
    assert ticket.status == TicketStatus.RESOLVED
    assert interaction_of(session, ooo).classification == "auto_reply"
    # A new conversation started by a machine gets no acknowledgement either.
    ingest(
        make_mail(
            sender="robot@example.net",
            message_id="<bot@example.net>",
            extra_headers={"Auto-Submitted": "auto-generated"},
        )
    )
    acks = session.scalars(
        select(OutboundEmail).where(OutboundEmail.kind == OutboundKind.ACKNOWLEDGEMENT)
    ).all()
    assert [a.ticket_id for a in acks] == [ticket.id]


def test_bounce_of_our_reply_is_linked_and_marks_the_address_undeliverable(session, ingest, settings):
    first = ingest(make_mail())
    ticket = session.get(Ticket, first.ticket_id)
    agent, _token = make_agent(session)
    outbound = queue_reply(
        session=session,
        ticket=ticket,
        agent=agent,
        text="Zkuste prosím reset hesla.",
        html=None,
        now=NOW,
        settings=settings,
    )
    outbound.state = OutboundState.SENT
    session.flush()
    bounce = ingest(make_dsn(original_message_id=f"<{outbound.message_id.strip('<>')}>"), mail_from="")
    assert bounce.ticket_id == ticket.id
    assert interaction_of(session, bounce).classification == "bounce"
    assert outbound.state == OutboundState.BOUNCED
    address = session.scalar(select(ContactEmail).where(ContactEmail.address == "jana@example.cz"))
    assert address.undeliverable_at is not None


def test_reused_message_id_from_another_sender_is_kept_and_flagged(session, ingest):
    first = ingest(make_mail())
    impostor = ingest(make_mail(sender="mallory@evil.example", subject="Pay here", body="Send money"))
    assert impostor.status == InboundStatus.PROCESSED
    assert impostor.interaction_id != first.interaction_id
    kept = interaction_of(session, impostor)
    assert kept.flag == FLAG_REUSED_MESSAGE_ID
    assert kept.ticket_id != first.ticket_id


def test_rep_mail_to_the_log_address_lands_on_the_customers_ticket(session, ingest):
    first = ingest(make_mail())
    agent, _token = make_agent(session, email="rep@centrala.test")
    logged = ingest(
        make_mail(
            sender="Rep <rep@centrala.test>",
            to="Jana <jana@example.cz>",
            subject="Re: přihlášení",
            body="Heslo jsem Vám resetoval.",
            message_id="<rep-1@centrala.test>",
        ),
        mailbox="log@localhost",
    )
    entry = interaction_of(session, logged)
    assert logged.ticket_id == first.ticket_id
    assert entry.direction == Direction.OUTBOUND and entry.agent_id == agent.id
    acks = session.scalars(
        select(OutboundEmail).where(OutboundEmail.kind == OutboundKind.ACKNOWLEDGEMENT)
    ).all()
    assert len(acks) == 1  # only the customer's first mail


def test_log_address_refuses_mail_from_non_agents(ingest):
    outcome = ingest(make_mail(sender="someone@example.org", to="jana@example.cz"), mailbox="log@localhost")
    assert outcome.status == InboundStatus.QUARANTINED
    assert "agent" in outcome.reason


def rep_mail(number: int, *, sent_at: datetime = NOW, **fields) -> bytes:
    """Mail from the agent rep@centrala.test to the customer, as the rep's own mail program sends it."""
    return make_mail(
        sender="Rep <rep@centrala.test>",
        to=fields.pop("to", "Jana <jana@example.cz>"),
        subject=fields.pop("subject", "Re: přihlášení"),
        body="Heslo jsem Vám resetoval.",
        message_id=f"<rep-{number}@centrala.test>",
        date=sent_at,
        **fields,
    )


@pytest.fixture()
def policy(session):
    """A round-the-clock SLA policy for every ticket."""
    session.add(
        SlaPolicy(
            name="Round the clock",
            is_default=True,
            escalations=[],
            targets={"default": {"first_response": 60, "next_response": 120, "resolution": 480}},
            updated_at=NOW,
        )
    )
    session.flush()


def clock_states(session, ticket_id) -> dict[SlaMetric, ClockState]:
    clocks = session.scalars(select(SlaClock).where(SlaClock.ticket_id == ticket_id).order_by(SlaClock.id))
    return {clock.metric: clock.state for clock in clocks}


def test_rep_mail_answers_the_customer_as_a_console_reply_does(session, ingest, policy):
    first = ingest(make_mail())
    make_agent(session, email="rep@centrala.test")

    sent_at = NOW + timedelta(minutes=5)
    logged = ingest(rep_mail(1, sent_at=sent_at), at=sent_at + timedelta(minutes=1), mailbox="log@localhost")

    ticket = session.get(Ticket, first.ticket_id)
    assert logged.ticket_id == ticket.id and ticket.status == TicketStatus.PENDING
    assert clock_states(session, ticket.id) == {
        SlaMetric.FIRST_RESPONSE: ClockState.MET,
        SlaMetric.RESOLUTION: ClockState.PAUSED,
    }
    first_response = session.scalars(
        select(SlaClock).where(SlaClock.ticket_id == ticket.id, SlaClock.metric == SlaMetric.FIRST_RESPONSE)
    ).one()
    # Met when the rep sent it (its Date), not when the copy reached us.
    assert first_response.met_at == sent_at
    assert interaction_of(session, logged).occurred_at == sent_at


def test_rep_mail_older_than_the_customers_last_message_is_logged_but_answers_nothing(
    session, ingest, policy
):
    first = ingest(make_mail())
    make_agent(session, email="rep@centrala.test")

    # Read late (a Sent folder backfilled, a poller that was down): sent before the customer wrote.
    logged = ingest(
        rep_mail(1, sent_at=NOW - timedelta(hours=3)), at=NOW + timedelta(minutes=30), mailbox="log@localhost"
    )

    ticket = session.get(Ticket, first.ticket_id)
    assert logged.ticket_id == ticket.id and ticket.status == TicketStatus.NEW
    assert clock_states(session, ticket.id) == {
        SlaMetric.FIRST_RESPONSE: ClockState.RUNNING,
        SlaMetric.RESOLUTION: ClockState.RUNNING,
    }
    # On the timeline by when it was sent, before the customer's message (as read back: the ticket's list in
    # this session holds its entries in the order they were added).
    session.expire(ticket, ["interactions"])
    assert [i.external_id for i in ticket.interactions][:2] == ["rep-1@centrala.test", "m1@example.cz"]


def test_an_automated_rep_mail_answers_nothing(session, ingest, policy):
    first = ingest(make_mail())
    make_agent(session, email="rep@centrala.test")

    out_of_office = rep_mail(1, subject="Nepřítomnost", extra_headers={"Auto-Submitted": "auto-replied"})
    logged = ingest(out_of_office, at=NOW + timedelta(minutes=1), mailbox="log@localhost")

    assert interaction_of(session, logged).direction == Direction.OUTBOUND
    assert session.get(Ticket, first.ticket_id).status == TicketStatus.NEW
    assert clock_states(session, first.ticket_id)[SlaMetric.FIRST_RESPONSE] == ClockState.RUNNING


def test_rep_mail_threads_by_our_reply_address_among_its_recipients(session, ingest, settings):
    older = ingest(make_mail())
    newer = ingest(make_mail(subject="Jiná věc", message_id="<m2@example.cz>"), at=NOW + timedelta(hours=1))
    make_agent(session, email="rep@centrala.test")
    address = make_reply_address(
        mailbox="support@localhost", ticket_id=older.ticket_id, secret=secret(settings)
    )

    # Reply-all to mail of ours: the ticket's reply address is in Cc, the subject says nothing.
    logged = ingest(
        rep_mail(1, subject="Dotaz", extra_headers={"Cc": address}),
        at=NOW + timedelta(hours=2),
        mailbox="log@localhost",
    )

    assert newer.ticket_id != older.ticket_id
    entry = interaction_of(session, logged)
    assert (logged.ticket_id, entry.thread_reason) == (older.ticket_id, "rep-log:reply-address")
    assert entry.contact.emails[0].address == "jana@example.cz"


def test_new_ticket_is_acknowledged_and_quoted_history_is_stripped(session, ingest):
    body = "Pořád to nejde.\n\nDne 20. 11. 2026 v 9:30 Support napsal(a):\n> Zkuste reset hesla.\n"
    outcome = ingest(make_mail(body=body))
    entry = interaction_of(session, outcome)
    assert entry.text == "Pořád to nejde."
    assert "Zkuste reset hesla" in entry.full_text
    ack = session.scalar(select(OutboundEmail).where(OutboundEmail.kind == OutboundKind.ACKNOWLEDGEMENT))
    assert ack.ticket_id == outcome.ticket_id and ack.state == OutboundState.QUEUED


def test_inline_image_cid_is_rewritten_to_our_attachment_url(session, ingest):
    raw = (
        b"From: jana@example.cz\r\nTo: support@localhost\r\nSubject: screenshot\r\nMessage-ID: <cid@example.cz>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=rel\r\n\r\n"
        b'--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>See <img src="cid:shot1@example.cz"></p>\r\n'
        b"--rel\r\nContent-Type: image/png\r\nContent-ID: <shot1@example.cz>\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: inline; filename=shot.png\r\n\r\niVBORw0KGgo=\r\n--rel--\r\n"
    )
    entry = interaction_of(session, ingest(raw))
    [image] = entry.attachments
    assert f'src="/api/v1/attachments/{image.id}"' in entry.html
    assert "cid:" not in entry.html


# An inbound drain writes the rows of a batch together at its end; a message must still thread onto what the
# messages before it in the same batch recorded, and looking that up must not write the batch piecemeal.


def unwritten_message(session, *, contact, ticket, external_id, cc=()):
    """A message recorded earlier in the same transaction and not written yet."""
    with session.no_autoflush:
        return add_interaction(
            session=session, ticket=ticket, contact=contact, channel=Channel.EMAIL, direction=Direction.INBOUND,
            occurred_at=NOW, now=NOW, external_id=external_id, cc_addresses=cc,
        )


def test_a_reference_to_an_unwritten_message_threads_onto_its_new_ticket_without_writing_it(session):
    jana = make_contact(session, emails=["jana@example.cz"])
    ticket = open_ticket(session=session, contact=jana, subject="Faktura", channel=Channel.EMAIL, now=NOW, flush=False)
    unwritten_message(session, contact=jana, ticket=ticket, external_id="m1@example.cz")

    match = find_email_thread(
        session=session, referenced_ids=["m1@example.cz"], subject="Re: Faktura", sender=jana,
        sender_address="jana@example.cz",
    )

    assert (match.ticket, match.reason) == (ticket, ThreadReason.REFERENCE)
    assert ticket in session.new


def test_the_subject_tag_of_a_ticket_opened_earlier_in_the_batch_threads(session):
    jana = make_contact(session, emails=["jana@example.cz"])
    ticket = open_ticket(session=session, contact=jana, subject="Faktura", channel=Channel.EMAIL, now=NOW, flush=False)
    unwritten_message(session, contact=jana, ticket=ticket, external_id="m1@example.cz")

    match = find_email_thread(
        session=session, referenced_ids=[], subject=f"Re: [#{ticket.number}] Faktura", sender=jana,
        sender_address="jana@example.cz",
    )

    assert (match.ticket, match.reason) == (ticket, ThreadReason.SUBJECT_TAG)
    assert ticket in session.new


def test_someone_copied_on_an_unwritten_message_takes_part_and_a_stranger_still_does_not(session):
    jana = make_contact(session, emails=["jana@example.cz"])
    boss = make_contact(session, emails=["boss@example.cz"])
    stranger = make_contact(session, emails=["x@other.example"])
    ticket = make_ticket(session, contact=jana)
    make_interaction(session, ticket=ticket, external_id="m1@example.cz")
    # Jana answers in this batch and copies her boss, who replies to her first message at once.
    copying = unwritten_message(session, contact=jana, ticket=ticket, external_id="m2@example.cz", cc=["boss@example.cz"])

    by_boss = find_email_thread(
        session=session, referenced_ids=["m1@example.cz"], subject="Re: invoice", sender=boss,
        sender_address="boss@example.cz",
    )
    by_stranger = find_email_thread(
        session=session, referenced_ids=["m1@example.cz"], subject="Re: invoice", sender=stranger,
        sender_address="x@other.example",
    )

    assert (by_boss.ticket, by_boss.reason) == (ticket, ThreadReason.REFERENCE)
    assert (by_stranger.ticket, by_stranger.reason) == (None, ThreadReason.FOREIGN_REFERENCE)
    assert copying in session.new
