"""A rep's own Sent folder, read from a real Dovecot: what the rep sends to a customer lands on the customer's
ticket as the rep's answer, private mail stays out, the folder is never touched, and a copy that also came
by BCC to the log address is one interaction."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from centrala.core import clock
from centrala.core.blobs import BlobStore
from centrala.core.db import get_sessionmaker
from centrala.core.settings import ImapSource, Settings, get_settings
from centrala.ingest.imap import connect_imap, import_new_messages
from centrala.ingest.ledger import record_inbound_email
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.ingest.process import process_inbound_email
from centrala.tickets.models import (
    Direction,
    Interaction,
    OutboundEmail,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    Ticket,
)
from tests.factories import make_agent
from tests.support.dovecot import DovecotServer
from tests.support.mails import make_mail

REP = "petra@centrala.test"


def wire(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture()
def settings(redis_url: str, committed_db: Engine) -> Settings:
    return get_settings().model_copy(update={"log_mailboxes": ["log@localhost"]})


def sent_source(dovecot: DovecotServer, **options: str) -> ImapSource:
    return ImapSource(
        name="petra-sent", url=dovecot.url("Sent"), mailbox="support@localhost", kind="sent", **options
    )


@pytest.fixture()
def run_pass(blobs: BlobStore) -> Callable[[ImapSource], int]:
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


def process_all(engine: Engine, settings: Settings, blobs: BlobStore) -> list:
    outcomes = []
    with Session(engine) as session:
        ids = session.scalars(
            select(InboundEmail.id)
            .where(InboundEmail.status == InboundStatus.RECEIVED)
            .order_by(InboundEmail.id)
        ).all()
    for inbound_id in ids:
        with get_sessionmaker()() as session:
            outcomes.append(
                process_inbound_email(
                    session=session, inbound_id=inbound_id, now=clock.now(), blobs=blobs, settings=settings
                )
            )
            session.commit()
    return outcomes


def customer_ticket(engine: Engine, settings: Settings, blobs: BlobStore) -> int:
    """A customer's e-mail, received and processed: their ticket, with a first-response clock running."""
    with get_sessionmaker()() as session:
        make_agent(session, email=REP, name="Petra Malá")
        session.add(
            SlaPolicy(
                name="Default",
                is_default=True,
                targets={"default": {"first_response": 240}},
                escalations=[],
                updated_at=clock.now(),
            )
        )
        record_inbound_email(
            session=session,
            raw=make_mail(message_id="<cust-1@example.cz>"),
            mailbox="support@localhost",
            mail_from="jana@example.cz",
            rcpt_tos=["support@localhost"],
            now=clock.now(),
            blobs=blobs,
        )
        session.commit()
    [outcome] = process_all(engine, settings, blobs)
    return outcome.ticket_id


def rep_reply() -> bytes:
    return wire(
        make_mail(
            sender=f"Petra Malá <{REP}>",
            to="Jana Nováková <jana@example.cz>",
            subject="Re: Nefunguje mi přihlášení",
            body="Dobrý den, heslo jsme obnovili. Petra",
            message_id="<rep-1@centrala.test>",
            in_reply_to="<cust-1@example.cz>",
            references="<cust-1@example.cz>",
        )
    )


def test_a_reps_sent_reply_lands_on_the_customers_ticket_and_private_mail_stays_out(
    dovecot, settings, committed_db, blobs, run_pass
):
    ticket_id = customer_ticket(committed_db, settings, blobs)
    old = dovecot.append(
        wire(
            make_mail(
                sender=REP, to="jana@example.cz", message_id="<before@centrala.test>", subject="Older mail"
            )
        ),
        folder="Sent",
    )
    source = sent_source(dovecot)
    assert run_pass(source) == 0  # starts with what is sent from now on

    reply_uid = dovecot.append(rep_reply(), folder="Sent")
    private_uid = dovecot.append(
        wire(
            make_mail(
                sender=REP, to="mum@example.org", subject="Neděle", message_id="<private@centrala.test>"
            )
        ),
        folder="Sent",
    )
    assert run_pass(source) == 2
    # The same reply BCC'd to the log address as well (with the relay's trace header on top).
    bcc_copy = (
        b"Received: from mail.centrala.test by mx.centrala.test; Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        + rep_reply()
    )
    with get_sessionmaker()() as session:
        record_inbound_email(
            session=session,
            raw=bcc_copy,
            mailbox="log@localhost",
            mail_from=REP,
            rcpt_tos=["log@localhost"],
            now=clock.now(),
            blobs=blobs,
        )
        session.commit()
    outcomes = process_all(committed_db, settings, blobs)

    assert [o.status for o in outcomes] == [InboundStatus.PROCESSED] * 3, outcomes
    assert outcomes[1].reason == "sent mail to no known customer" and outcomes[1].interaction_id is None, (
        outcomes
    )
    with Session(committed_db) as session:
        [reply] = session.scalars(
            select(Interaction).where(Interaction.external_id == "rep-1@centrala.test")
        ).all()
        assert reply.ticket_id == ticket_id
        assert reply.direction is Direction.OUTBOUND and reply.agent_id is not None
        assert outcomes[2].interaction_id == reply.id  # the BCC copy is the same interaction
        assert (
            session.scalar(select(Interaction.id).where(Interaction.external_id == "private@centrala.test"))
            is None
        )
        assert (
            session.scalar(select(Interaction.id).where(Interaction.external_id == "before@centrala.test"))
            is None
        )
        assert len(session.scalars(select(Ticket)).all()) == 1
        first = session.scalars(select(SlaClock).where(SlaClock.metric == SlaMetric.FIRST_RESPONSE)).one()
        assert first.state.value == "met"  # the rep answered, from their own mail program
        acknowledgements = session.scalars(select(OutboundEmail)).all()
        assert len(acknowledgements) == 1  # the customer's own mail was acknowledged; the rep's mail never is
    with dovecot.client() as client:
        client.select_folder("Sent", readonly=True)
        flags = client.get_flags([old, reply_uid, private_uid])
        assert all(b"\\Seen" not in flags[uid] for uid in (old, reply_uid, private_uid))


def test_a_sent_folder_can_be_read_from_the_start(dovecot, settings, committed_db, blobs, run_pass):
    customer_ticket(committed_db, settings, blobs)
    dovecot.append(rep_reply(), folder="Sent")
    assert run_pass(sent_source(dovecot, start="all")) == 1
    process_all(committed_db, settings, blobs)
    with Session(committed_db) as session:
        assert session.scalar(select(Interaction.id).where(Interaction.external_id == "rep-1@centrala.test"))


def test_a_sent_folder_is_never_changed_and_start_is_only_for_sent_folders():
    url = "imap://u:p@127.0.0.1:143/Sent"
    with pytest.raises(ValidationError, match="never changed"):
        ImapSource(name="s", url=url, kind="sent", after_import="move:Archive")
    with pytest.raises(ValidationError, match="Sent folders"):
        ImapSource(name="s", url=url, start="now")
    assert ImapSource(name="s", url=url, kind="sent").after_import == "none"
