"""A new ticket has its number before it is written: the inbound drain writes mail quoting it (the
acknowledgement's subject) and writes a whole batch at once. The numbers must still be the database's own:
unique, in order, and the same once written."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import select

from centrala.core.db import get_sessionmaker, is_postgresql
from centrala.tickets.models import Channel, Contact, Ticket, TicketPriority
from centrala.tickets.tickets import open_ticket
from tests.factories import make_contact, make_ticket

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def opened(session, contact, subject: str, *, flush: bool = False) -> Ticket:
    return open_ticket(
        session=session, contact=contact, subject=subject, channel=Channel.EMAIL, now=NOW, flush=flush
    )


def stored(session) -> dict[int, str]:
    return dict(session.execute(select(Ticket.id, Ticket.subject).order_by(Ticket.id)).all())


def test_tickets_opened_before_a_write_keep_their_numbers_once_written(session):
    contact = make_contact(session)
    earlier = make_ticket(session, contact=contact, subject="Earlier")

    first = opened(session, contact, "First")
    second = opened(session, contact, "Second")

    # Known before anything is written, in order, after every ticket already there.
    assert earlier.id < first.id < second.id
    assert first.number == f"T-{1000 + first.id}"
    assert first.priority == TicketPriority.NORMAL
    session.flush()
    assert stored(session) == {earlier.id: "Earlier", first.id: "First", second.id: "Second"}


def test_tickets_numbered_by_the_database_in_the_same_transaction_take_no_number_given_out(session):
    contact = make_contact(session)

    given = opened(session, contact, "Given its number, not written yet")
    # A ticket made without a number, waiting to be written when the next one is opened...
    unnumbered = Ticket(
        subject="Numbered when written", channel=Channel.EMAIL, contact=contact, created_at=NOW, updated_at=NOW
    )
    session.add(unnumbered)
    after = opened(session, contact, "After it")
    # ... and one written at once in between.
    written = make_ticket(session, contact=contact, subject="Written at once")
    last = opened(session, contact, "Last")
    session.flush()

    ids = [given.id, unnumbered.id, after.id, written.id, last.id]
    assert len(set(ids)) == 5
    assert stored(session) == {
        given.id: "Given its number, not written yet",
        unnumbered.id: "Numbered when written",
        after.id: "After it",
        written.id: "Written at once",
        last.id: "Last",
    }


def test_a_ticket_numbered_in_a_transaction_that_rolled_back_is_not_counted_on(committed_db):
    sessions = get_sessionmaker()
    with sessions() as session:
        contact = make_contact(session)
        kept = opened(session, contact, "Kept", flush=True)
        session.commit()
        contact_id = contact.id
    with sessions() as session:
        opened(session, session.get(Contact, contact_id), "Rolled back")
        session.rollback()
    with sessions() as session:
        again = opened(session, session.get(Contact, contact_id), "Again")
        session.commit()
        assert again.id > kept.id
        assert stored(session) == {kept.id: "Kept", again.id: "Again"}


def test_concurrent_transactions_never_open_two_tickets_with_one_number(committed_db):
    sessions = get_sessionmaker()
    with sessions() as session:
        contact_id = make_contact(session).id
        session.commit()
    errors: list[BaseException] = []
    opened_ids: list[int] = []
    lock = threading.Lock()

    def open_some(worker: int) -> None:
        try:
            for n in range(10):
                with sessions() as session:
                    ticket = opened(session, session.get(Contact, contact_id), f"{worker}-{n}")
                    session.commit()
                    with lock:
                        opened_ids.append(ticket.id)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=open_some, args=(worker,)) for worker in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(opened_ids)) == 30
    with sessions() as session:
        assert sorted(stored(session)) == sorted(opened_ids)
        if is_postgresql(session):
            # Numbers come from the table's sequence: the next ticket written the usual way follows them.
            later = make_ticket(session, subject="Later")
            assert later.id > max(opened_ids)
            session.rollback()
