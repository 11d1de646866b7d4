"""Processing raw inbound e-mail into contacts, tickets and timeline entries."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from centrala.core.settings import get_settings
from centrala.ingest.ledger import record_inbound_email, requeue_stale_emails
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.ingest.parse_ahead import ParsedRow
from centrala.ingest.process import note_message_ids, process_inbound_email, process_pending_emails
from centrala.mail.parse import parse_email
from centrala.tickets.models import (
    Contact,
    ContactEmail,
    Direction,
    Interaction,
    OutboundEmail,
    Ticket,
    TicketStatus,
)
from tests.support.mails import make_mail

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture()
def ingest(session, blobs):
    """Store raw bytes in the ledger and process them, as SMTP and the worker would."""

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


def inbound(ticket):
    """The customer's messages on a ticket (our acknowledgements are on its timeline too)."""
    return [i for i in ticket.interactions if i.direction == Direction.INBOUND]


def count_inbound(session):
    return session.scalar(
        select(func.count()).select_from(Interaction).where(Interaction.direction == Direction.INBOUND)
    )


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_first_mail_opens_ticket_for_new_contact(session, ingest):
    outcome = ingest(make_mail())
    assert outcome.status == InboundStatus.PROCESSED
    ticket = session.get(Ticket, outcome.ticket_id)
    assert ticket.subject == "Nefunguje mi přihlášení"
    assert ticket.status == TicketStatus.NEW
    assert ticket.number == f"T-{1000 + ticket.id}"
    assert ticket.contact.name == "Jana Nováková"
    assert [e.address for e in ticket.contact.emails] == ["jana@example.cz"]
    [interaction] = inbound(ticket)
    assert interaction.external_id == "m1@example.cz"
    assert interaction.thread_reason == "new-ticket"


def test_reply_with_in_reply_to_lands_on_the_same_ticket_and_reopens_it(session, ingest):
    first = ingest(make_mail())
    ticket = session.get(Ticket, first.ticket_id)
    ticket.status = TicketStatus.RESOLVED
    reply = ingest(
        make_mail(
            subject="Re: Nefunguje mi přihlášení",
            message_id="<m2@example.cz>",
            in_reply_to="<m1@example.cz>",
            references="<m1@example.cz>",
        ),
        at=NOW + timedelta(minutes=5),
    )
    assert reply.ticket_id == first.ticket_id
    assert ticket.status == TicketStatus.OPEN
    assert [i.thread_reason for i in inbound(ticket)] == ["new-ticket", "reference"]


def test_a_batch_written_together_threads_within_itself_and_names_each_outcomes_records(session, blobs):
    # One transaction's messages are written together rather than one by one: a reply to a message of the
    # same batch must still find it, and each outcome must still name what its message became.
    mails = [
        make_mail(),
        make_mail(sender="Petr <petr@example.cz>", subject="Faktura", message_id="<p1@example.cz>"),
        make_mail(
            subject="Re: Nefunguje mi přihlášení", message_id="<m2@example.cz>", in_reply_to="<m1@example.cz>",
            references="<m1@example.cz>",
        ),
        make_mail(sender="Petr <petr@example.cz>", subject="Jiná věc", message_id="<p2@example.cz>"),
    ]
    ids = [
        record_inbound_email(
            session=session, raw=raw, mailbox="support@localhost", mail_from="x@example.org",
            rcpt_tos=["support@localhost"], now=NOW, blobs=blobs,
        ).id
        for raw in mails
    ]
    session.flush()

    outcomes = process_pending_emails(
        session=session, now=NOW, blobs=blobs, settings=get_settings(), limit=10, ids=ids
    )

    assert [outcome.inbound_id for outcome in outcomes] == ids
    assert {outcome.status for outcome in outcomes} == {InboundStatus.PROCESSED}
    for outcome in outcomes:
        interaction = session.get(Interaction, outcome.interaction_id)
        assert interaction.ticket_id == outcome.ticket_id
        assert session.get(InboundEmail, outcome.inbound_id).interaction_id == interaction.id
    jana, petr, reply, petr_again = outcomes
    assert reply.ticket_id == jana.ticket_id
    assert session.get(Interaction, reply.interaction_id).thread_reason == "reference"
    assert len({jana.ticket_id, petr.ticket_id, petr_again.ticket_id}) == 3
    assert session.get(Ticket, petr.ticket_id).contact_id == session.get(Ticket, petr_again.ticket_id).contact_id
    assert count(session, Contact) == 2


def test_a_drains_batch_is_written_once_though_its_replies_look_up_their_parents(session, ingest, blobs):
    # Earlier mail of both senders, written: neither is a new contact, whose creation writes on PostgreSQL.
    ingest(make_mail(sender="Petr <petr@example.cz>", subject="Faktura", message_id="<p0@example.cz>"))
    ingest(make_mail(subject="Objednávka", message_id="<j0@example.cz>"))
    mails = [
        make_mail(),
        make_mail(
            subject="Re: Nefunguje mi přihlášení", message_id="<m2@example.cz>", in_reply_to="<m1@example.cz>",
            references="<m1@example.cz>",
        ),
        make_mail(
            sender="Petr <petr@example.cz>", subject="Re: Faktura", message_id="<p1@example.cz>",
            in_reply_to="<p0@example.cz>", references="<p0@example.cz>",
        ),
    ]
    recorded = [
        record_inbound_email(
            session=session, raw=raw, mailbox="support@localhost", mail_from="x@example.org",
            rcpt_tos=["support@localhost"], now=NOW, blobs=blobs,
        )
        for raw in mails
    ]
    session.flush()
    # Parsed ahead of the transaction, and their Message-IDs noted in the ledger, as a drain does.
    parsed = {r.id: ParsedRow(r.sha256, parse_email(raw, mail_from="x@example.org")) for r, raw in zip(recorded, mails)}
    note_message_ids(session=session, parsed=parsed)
    flushes = []
    event.listen(session, "after_flush", lambda *_: flushes.append(1))

    outcomes = process_pending_emails(
        session=session, now=NOW, blobs=blobs, settings=get_settings(), limit=10, ids=[r.id for r in recorded],
        parsed=parsed,
    )

    # The reply's parent, done a moment before in the same transaction, is not taken for another drain's.
    assert [outcome.status for outcome in outcomes] == [InboundStatus.PROCESSED] * 3
    first, reply, petr = outcomes
    assert reply.ticket_id == first.ticket_id
    petrs_first = session.scalar(select(Interaction).where(Interaction.external_id == "p0@example.cz"))
    assert petr.ticket_id == petrs_first.ticket_id
    assert len(flushes) == 1


def test_new_subject_without_reference_opens_second_ticket_for_same_contact(session, ingest):
    first = ingest(make_mail())
    second = ingest(make_mail(subject="Faktura za listopad", message_id="<m3@example.cz>"))
    assert second.ticket_id != first.ticket_id
    tickets = session.scalars(select(Ticket).order_by(Ticket.id)).all()
    assert tickets[0].contact_id == tickets[1].contact_id
    assert count(session, Contact) == 1


def test_subject_tag_from_the_tickets_contact_threads(session, ingest):
    first = ingest(make_mail())
    number = session.get(Ticket, first.ticket_id).number
    tagged = ingest(make_mail(subject=f"Re: dotaz [#{number}]", message_id="<m4@example.cz>"))
    assert tagged.ticket_id == first.ticket_id


def test_reply_with_foreign_reference_or_subject_tag_opens_new_ticket(session, ingest):
    first = ingest(make_mail())
    number = session.get(Ticket, first.ticket_id).number
    stranger = ingest(
        make_mail(
            sender="Mallory <mallory@evil.example>",
            subject=f"Re: [#{number}]",
            message_id="<evil@evil.example>",
            in_reply_to="<m1@example.cz>",
        )
    )
    assert stranger.ticket_id != first.ticket_id
    interaction = session.get(Interaction, stranger.interaction_id)
    assert interaction.thread_reason == "new-ticket:foreign-reference"
    assert [i.external_id for i in inbound(session.get(Ticket, first.ticket_id))] == ["m1@example.cz"]


def test_same_message_twice_creates_one_interaction(session, ingest, blobs):
    raw = make_mail()
    first = ingest(raw)
    # The same Message-ID arriving again with different bytes (e.g. another relay's Received header).
    again = ingest(b"Received: from relay.example by mx\r\n" + raw)
    assert again.interaction_id == first.interaction_id
    assert again.reason == "duplicate"
    assert count_inbound(session) == 1
    assert count(session, InboundEmail) == 2
    # And processing the very same row again changes nothing.
    repeat = process_inbound_email(
        session=session, inbound_id=first.inbound_id, now=NOW, blobs=blobs, settings=get_settings()
    )
    assert repeat.reason == "not pending"
    assert count_inbound(session) == 1


def test_message_without_message_id_is_deduplicated_by_its_bytes(session, ingest):
    raw = make_mail(message_id=None)
    first = ingest(raw)
    interaction = session.get(Interaction, first.interaction_id)
    assert interaction.external_id.startswith("sha256:")


def test_unusable_message_is_quarantined_with_its_bytes_kept(session, ingest):
    raw = b"To: support@localhost\r\nSubject: no sender\r\n\r\nbody\r\n"
    outcome = ingest(raw)
    assert outcome.status == InboundStatus.QUARANTINED
    row = session.get(InboundEmail, outcome.inbound_id)
    assert row.status == InboundStatus.QUARANTINED
    assert "sender" in row.reason
    assert row.raw == raw
    assert count(session, Ticket) == 0


def test_sender_address_is_matched_case_insensitively(session, ingest):
    ingest(make_mail())
    ingest(make_mail(sender="JANA@Example.CZ", subject="Jiný dotaz", message_id="<m5@example.cz>"))
    assert count(session, Contact) == 1
    assert count(session, ContactEmail) == 1


def test_attachments_are_stored_content_addressed(session, ingest, blobs):
    outcome = ingest(make_mail(attachments=[("scan.png", "image/png", b"\x89PNG fake image")]))
    [attachment] = session.get(Interaction, outcome.interaction_id).attachments
    assert attachment.filename == "scan.png"
    assert blobs.get(attachment.sha256) == b"\x89PNG fake image"


def test_large_message_is_kept_in_the_blob_store(session, ingest, blobs):
    raw = make_mail(attachments=[("big.bin", "application/octet-stream", b"x" * 1_500_000)])
    outcome = ingest(raw)
    row = session.get(InboundEmail, outcome.inbound_id)
    assert row.raw is None and blobs.get(row.blob_sha256) == raw
    assert outcome.status == InboundStatus.PROCESSED


@pytest.mark.parametrize(
    ("return_path", "classification", "acknowledged"),
    [(None, "normal", True), ("<jana@example.cz>", "normal", True), ("<>", "bounce", False)],
)
def test_mail_read_over_imap_is_a_bounce_only_when_its_return_path_is_null(
    session, blobs, return_path, classification, acknowledged
):
    headers = {"Return-Path": return_path} if return_path else None
    raw = make_mail(extra_headers=headers)
    # As the IMAP poller stores it: the envelope sender from Return-Path, "" when there is none or it is null.
    recorded = record_inbound_email(
        session=session, raw=raw, mailbox="support@localhost",
        mail_from="jana@example.cz" if return_path == "<jana@example.cz>" else "",
        rcpt_tos=["support@localhost"], now=NOW, blobs=blobs, source="imap",
    )
    outcome = process_inbound_email(
        session=session, inbound_id=recorded.id, now=NOW, blobs=blobs, settings=get_settings()
    )
    session.flush()

    entry = session.get(Interaction, outcome.interaction_id)
    assert entry.classification == classification
    assert (count(session, OutboundEmail) == 1) is acknowledged


def test_sweeper_requeues_only_rows_left_unprocessed(session, blobs):
    stale = record_inbound_email(
        session=session,
        raw=make_mail(),
        mailbox="support@localhost",
        mail_from="",
        rcpt_tos=[],
        now=NOW - timedelta(minutes=5),
        blobs=blobs,
    )
    record_inbound_email(
        session=session,
        raw=make_mail(message_id="<fresh@x>"),
        mailbox="support@localhost",
        mail_from="",
        rcpt_tos=[],
        now=NOW,
        blobs=blobs,
    )
    assert requeue_stale_emails(session=session, now=NOW, older_than=timedelta(minutes=1)) == [stale.id]
    # Just handed over again: the next sweep leaves it alone until it is stale once more.
    assert (
        requeue_stale_emails(
            session=session, now=NOW + timedelta(seconds=30), older_than=timedelta(minutes=1)
        )
        == []
    )
