"""A rep's own Sent folder, read from a real Dovecot into the run's real database: what the rep sends to a
customer lands on the customer's ticket as the rep's answer, other mail stays out, the folder is only ever
read, mail already there is left unless a backfill is asked for, and a copy that also came by BCC to the log
address is one interaction."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.db import get_sessionmaker
from centrala.core.settings import ImapSource, Settings, get_settings
from centrala.ingest.imap import connect_imap, import_new_messages, run_imap_source
from centrala.ingest.ledger import SENT_FOLDER_SOURCE, record_inbound_email
from centrala.ingest.models import ImapCursor, InboundEmail, InboundStatus
from centrala.ingest.process import ProcessOutcome, process_inbound_email
from centrala.tickets.models import (
    Agent,
    ClockState,
    Contact,
    Direction,
    Interaction,
    OutboundEmail,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    Ticket,
    TicketStatus,
)
from tests.factories import make_agent, make_contact
from tests.support.dovecot import DovecotServer
from tests.support.mails import make_mail
from tests.support.processes import wait_until

REP = "petra@centrala.test"
CUSTOMER_MESSAGE_ID = "<cust-1@example.cz>"


def wire(raw: bytes) -> bytes:
    """``raw`` with CRLF line ends, as IMAP hands every message back (RFC 3501 §4.3)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture()
def settings(redis_url: str, committed_db: Engine) -> Settings:
    """The run's settings with a log address; writes commit for real."""
    return get_settings().model_copy(update={"log_mailboxes": ["log@localhost"]})


def sent_source(dovecot: DovecotServer, *, name: str = "petra-sent", **options: str) -> ImapSource:
    return ImapSource(name=name, url=dovecot.url("Sent"), mailbox="sales@localhost", kind="sent", **options)


@pytest.fixture()
def run_pass(blobs: BlobStore) -> Callable[[ImapSource], int]:
    """One import pass over a source, on a connection of its own."""

    def run(source: ImapSource) -> int:
        with connect_imap(source) as client:
            return import_new_messages(
                source=source,
                client=client,
                session_factory=get_sessionmaker(),
                blobs=blobs,
                now_fn=clock.now,
            )

    return run


@pytest.fixture()
def process_pending(settings: Settings, blobs: BlobStore) -> Callable[[], list[ProcessOutcome]]:
    """Process every received ledger row in order, each in its own committed transaction, as workers do."""

    def process() -> list[ProcessOutcome]:
        with get_sessionmaker()() as session:
            ids = session.scalars(
                select(InboundEmail.id)
                .where(InboundEmail.status == InboundStatus.RECEIVED)
                .order_by(InboundEmail.id)
            ).all()
        outcomes = []
        for inbound_id in ids:
            with get_sessionmaker()() as session:
                outcome = process_inbound_email(
                    session=session, inbound_id=inbound_id, now=clock.now(), blobs=blobs, settings=settings
                )
                outcomes.append(outcome)
                session.commit()
        return outcomes

    return process


def receive_by_smtp(raw: bytes, *, mailbox: str, mail_from: str, blobs: BlobStore) -> None:
    """Store ``raw`` in the ledger as the SMTP server does once it has the whole message."""
    with get_sessionmaker()() as session:
        record_inbound_email(
            session=session,
            raw=raw,
            mailbox=mailbox,
            mail_from=mail_from,
            rcpt_tos=[mailbox],
            now=clock.now(),
            blobs=blobs,
        )
        session.commit()


@pytest.fixture()
def customer_ticket(blobs: BlobStore, process_pending) -> int:
    """Petra is an agent; a customer's e-mail opened a ticket with its first-response clock running."""
    with get_sessionmaker()() as session:
        make_agent(session, email=REP, name="Petra Malá")
        session.add(
            SlaPolicy(
                name="Default",
                is_default=True,
                targets={"default": {"first_response": 240, "resolution": 2400}},
                escalations=[],
                updated_at=clock.now(),
            )
        )
        session.commit()
    receive_by_smtp(
        make_mail(message_id=CUSTOMER_MESSAGE_ID), mailbox="support@localhost", mail_from="jana@example.cz",
        blobs=blobs,
    )
    [outcome] = process_pending()
    assert outcome.ticket_id is not None
    return outcome.ticket_id


def rep_reply(*, message_id: str = "<rep-1@centrala.test>", bcc: str | None = None) -> bytes:
    """Petra's answer to the customer, as her mail program sends it (and keeps it, Bcc and all, in Sent)."""
    return wire(
        make_mail(
            sender=f"Petra Malá <{REP}>",
            to="Jana Nováková <jana@example.cz>",
            subject="Re: Nefunguje mi přihlášení",
            body="Dobrý den,\nheslo jsme Vám obnovili.\nPetra",
            message_id=message_id,
            in_reply_to=CUSTOMER_MESSAGE_ID,
            references=CUSTOMER_MESSAGE_ID,
            date=datetime.now(UTC),
            extra_headers={"Bcc": bcc} if bcc else None,
        )
    )


def append(dovecot: DovecotServer, raw: bytes, *, received: datetime | None = None) -> int:
    """Put ``raw`` in Sent as a mail program does after sending it; ``received`` is its internal date."""
    with dovecot.client() as client:
        if not client.folder_exists("Sent"):
            client.create_folder("Sent")
        response = client.append("Sent", raw, msg_time=received)
    return int(response.split(b"]")[0].split()[-1])  # RFC 4315 §3: [APPENDUID <uidvalidity> <uid>]


def sent_folder(dovecot: DovecotServer) -> dict[int, tuple[bytes, ...]]:
    """UID -> flags of every message in Sent, looked at without changing anything (EXAMINE)."""
    with dovecot.client() as client:
        client.select_folder("Sent", readonly=True)
        return {uid: tuple(sorted(flags)) for uid, flags in client.get_flags(client.search(["ALL"])).items()}


def folders(dovecot: DovecotServer) -> list[str]:
    with dovecot.client() as client:
        return sorted(name for _flags, _delimiter, name in client.list_folders())


def interactions_with(engine: Engine, external_id: str) -> list[Interaction]:
    with Session(engine) as session:
        return list(session.scalars(select(Interaction).where(Interaction.external_id == external_id)))


def cursor(engine: Engine, source: ImapSource) -> ImapCursor | None:
    with Session(engine) as session:
        return session.get(ImapCursor, (source.name, source.folder))


def count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_reps_reply_in_their_sent_folder_lands_on_the_customers_ticket_as_theirs(
    dovecot, committed_db, run_pass, process_pending, customer_ticket
):
    append(dovecot, wire(make_mail(sender=REP, to="x@example.org", message_id="<older@centrala.test>")))
    source = sent_source(dovecot)
    assert run_pass(source) == 0  # what was sent before the folder was connected stays out
    uid = append(dovecot, rep_reply())
    before = sent_folder(dovecot)

    assert run_pass(source) == 1
    [outcome] = process_pending()

    assert (outcome.status, outcome.ticket_id) == (InboundStatus.PROCESSED, customer_ticket)
    [reply] = interactions_with(committed_db, "rep-1@centrala.test")
    assert (reply.direction, reply.thread_reason, reply.author_address) == (
        Direction.OUTBOUND, "rep-sent:reference", REP
    )
    with Session(committed_db) as session:
        row = session.get(InboundEmail, outcome.inbound_id)
        assert row.source == SENT_FOLDER_SOURCE
        assert session.get(Agent, reply.agent_id).email == REP
        assert session.scalar(select(func.count()).select_from(OutboundEmail)) == 1  # the customer's ack only
        ticket = session.get(Ticket, customer_ticket)
        assert ticket.status is TicketStatus.PENDING  # as after a reply from the console
        first_response = session.scalars(
            select(SlaClock).where(
                SlaClock.ticket_id == ticket.id, SlaClock.metric == SlaMetric.FIRST_RESPONSE
            )
        ).one()
        assert first_response.state is ClockState.MET
    # The rep's Sent folder is as it was: not read (\Seen), not \Recent-cleared, not moved, nothing created.
    assert sent_folder(dovecot) == before
    assert b"\\Recent" in before[uid] and b"\\Seen" not in before[uid]
    assert folders(dovecot) == ["INBOX", "Sent"]


def test_new_mail_to_a_known_contact_is_logged_and_other_sent_mail_is_left_out(
    dovecot, committed_db, run_pass, process_pending
):
    with get_sessionmaker()() as session:
        make_agent(session, email=REP, name="Petra Malá")
        make_agent(session, email="tomas@centrala.test", name="Tomáš")
        make_contact(session, name="Petr Novák", emails=["petr@firma.cz"])
        session.commit()
    source = sent_source(dovecot)
    with dovecot.client() as client:
        client.create_folder("Sent")
    assert run_pass(source) == 0

    def sent(number: int, *, sender: str = REP, to: str) -> bytes:
        return wire(
            make_mail(
                sender=sender,
                to=to,
                subject=f"Nabídka {number}",
                message_id=f"<sent-{number}@centrala.test>",
                date=datetime.now(UTC),
            )
        )

    for raw in (
        sent(1, to="Petr Novák <petr@firma.cz>, support@localhost"),  # a known contact: logged
        sent(2, to="tomas@centrala.test"),  # a colleague
        sent(3, to="mama@example.org"),  # someone Centrala does not know
        sent(4, to="support@localhost, support+t1-aaaaaaaaaaaaaaaa@localhost"),  # only our own addresses
        sent(5, sender="petra.mala@example.org", to="petr@firma.cz"),  # from an address that is no agent's
    ):
        append(dovecot, raw)
    before = sent_folder(dovecot)
    assert run_pass(source) == 5
    outcomes = process_pending()

    assert [o.status for o in outcomes] == [InboundStatus.PROCESSED] * 5
    assert [o.reason for o in outcomes] == [
        None,
        "sent mail names no known contact among its recipients",
        "sent mail names no known contact among its recipients",
        "sent mail names no known contact among its recipients",
        "sent mail must come from an active agent's address",
    ]
    [logged] = interactions_with(committed_db, "sent-1@centrala.test")
    with Session(committed_db) as session:
        ticket = session.get(Ticket, logged.ticket_id)
        assert ticket.contact.emails[0].address == "petr@firma.cz"
        # A new ticket, as a log address opens it, filed under the source's mailbox, waiting on the customer.
        assert (ticket.mailbox, ticket.status, logged.thread_reason) == (
            "sales@localhost", TicketStatus.PENDING, "rep-sent:new-ticket"
        )
        assert session.scalar(select(func.count()).select_from(Ticket)) == 1
        assert session.scalar(select(func.count()).select_from(Interaction)) == 1
        assert session.scalar(select(func.count()).select_from(Contact)) == 1  # nobody new became a contact
        assert session.scalar(select(func.count()).select_from(OutboundEmail)) == 0
    assert sent_folder(dovecot) == before


def test_mail_already_in_the_sent_folder_is_left_unless_a_backfill_is_asked_for(
    dovecot, committed_db, run_pass
):
    old = wire(make_mail(sender=REP, to="jana@example.cz", message_id="<old@centrala.test>"))
    recent = wire(make_mail(sender=REP, to="jana@example.cz", message_id="<recent@centrala.test>"))
    append(dovecot, old, received=datetime(2026, 9, 1, 12, 0, tzinfo=UTC))
    append(dovecot, recent, received=datetime(2026, 11, 2, 12, 0, tzinfo=UTC))
    before = sent_folder(dovecot)

    assert run_pass(sent_source(dovecot)) == 0  # the default: only what is sent from now on
    assert count(committed_db, InboundEmail) == 0
    new = wire(make_mail(sender=REP, to="jana@example.cz", message_id="<new@centrala.test>"))
    append(dovecot, new)
    assert run_pass(sent_source(dovecot)) == 1

    # A backfill is a source under a new name (its own cursor); what is stored already is not stored again.
    assert run_pass(sent_source(dovecot, name="petra-sent-nov", start="2026-11-01")) == 2
    assert run_pass(sent_source(dovecot, name="petra-sent-all", start="all")) == 3

    with Session(committed_db) as session:
        rows = session.scalars(select(InboundEmail).order_by(InboundEmail.id)).all()
    assert [row.raw for row in rows] == [new, recent, old]
    assert {row.source for row in rows} == {SENT_FOLDER_SOURCE}
    assert {uid: flags for uid, flags in sent_folder(dovecot).items() if uid in before} == before


def test_a_sent_folder_with_a_new_uidvalidity_does_not_bring_back_old_mail(dovecot, committed_db, run_pass):
    first = wire(make_mail(sender=REP, to="jana@example.cz", message_id="<first@centrala.test>"))
    source = sent_source(dovecot)
    with dovecot.client() as client:
        client.create_folder("Sent")
    assert run_pass(source) == 0
    append(dovecot, first)
    assert run_pass(source) == 1
    old_uidvalidity = cursor(committed_db, source).uidvalidity

    # The folder is recreated, as after a move to another server: years of old mail come back with it.
    with dovecot.client() as client:
        client.delete_folder("Sent")
    old = wire(make_mail(sender=REP, to="a@example.cz", message_id="<2024@centrala.test>"))
    append(dovecot, old, received=datetime(2024, 5, 1, tzinfo=UTC))
    append(dovecot, first)
    second = wire(make_mail(sender=REP, to="jana@example.cz", message_id="<second@centrala.test>"))
    append(dovecot, second)

    assert run_pass(source) == 2  # read again from the day before the last pass: first (known) and second

    assert cursor(committed_db, source).uidvalidity != old_uidvalidity
    with Session(committed_db) as session:
        assert [row.raw for row in session.scalars(select(InboundEmail).order_by(InboundEmail.id))] == [
            first, second
        ]


@pytest.mark.parametrize("first_copy", ["bcc to the log address", "sent folder"])
def test_a_reply_bccd_to_the_log_address_and_read_from_the_sent_folder_is_one_interaction(
    dovecot, blobs, committed_db, run_pass, process_pending, customer_ticket, first_copy
):
    source = sent_source(dovecot)
    with dovecot.client() as client:
        client.create_folder("Sent")
    assert run_pass(source) == 0
    # The Sent copy keeps the Bcc header; the delivered copy has none and gained a trace header on the way.
    sent_copy = rep_reply(bcc="log@localhost")
    trace = b"Received: from mail.centrala.test by mx.centrala.test; Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    delivered_copy = trace + rep_reply()

    def by_bcc() -> None:
        receive_by_smtp(delivered_copy, mailbox="log@localhost", mail_from=REP, blobs=blobs)

    def by_sent_folder() -> None:
        append(dovecot, sent_copy)
        assert run_pass(source) == 1

    order = [by_bcc, by_sent_folder] if first_copy == "bcc to the log address" else [by_sent_folder, by_bcc]
    outcomes = []
    for deliver in order:
        deliver()
        outcomes += process_pending()

    assert [o.status for o in outcomes] == [InboundStatus.PROCESSED] * 2
    assert outcomes[0].interaction_id is not None and outcomes[1].reason == "duplicate"
    [reply] = interactions_with(committed_db, "rep-1@centrala.test")
    assert outcomes[1].interaction_id == reply.id
    assert (reply.ticket_id, reply.direction) == (customer_ticket, Direction.OUTBOUND)
    with Session(committed_db) as session:
        sources = session.scalars(select(InboundEmail.source).order_by(InboundEmail.id)).all()
        assert sorted(sources[1:]) == ["imap-sent", "smtp"]
        assert session.scalar(select(func.count()).select_from(OutboundEmail)) == 1  # the customer's ack only


@contextmanager
def poller(source: ImapSource, settings: Settings, blobs: BlobStore) -> Iterator[None]:
    """``run_imap_source`` in a thread with short waits; stopped on leaving."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run_imap_source,
        args=(source, stop),
        kwargs={
            "settings": settings,
            "blobs": blobs,
            "idle_check_seconds": 0.5,
            "reconnect_initial_seconds": 0.2,
            "reconnect_max_seconds": 1.0,
        },
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "run_imap_source did not stop"


def test_the_poller_waits_in_idle_on_a_sent_folder_it_only_examines(dovecot, settings, blobs, committed_db):
    idle = settings.model_copy(update={"imap_idle_renew_seconds": 600.0, "imap_poll_seconds": 600.0})
    source = sent_source(dovecot)
    with dovecot.client() as client:
        client.create_folder("Sent")
    with poller(source, idle, blobs):
        wait_until(lambda: cursor(committed_db, source) is not None, timeout=10, what="the first pass")
        uid = append(dovecot, rep_reply())
        wait_until(
            lambda: count(committed_db, InboundEmail) == 1, timeout=10, what="a message announced in IDLE"
        )

    assert b"\\Seen" not in sent_folder(dovecot)[uid]
