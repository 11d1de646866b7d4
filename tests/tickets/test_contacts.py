"""Contacts: normalising addresses and numbers, creating contacts, finding them."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext

import pytest
from sqlalchemy import event, func, select

from centrala.core.errors import ConflictError, InvalidInputError
from centrala.tickets.contacts import (
    create_contact,
    find_contacts_by_email,
    find_contacts_by_phone,
    match_or_create_contact_by_email,
    normalise_email,
    normalise_phone,
    senders_looked_up,
)
from centrala.tickets.models import Contact, ContactEmail, OrganizationDomain
from tests.factories import NOW, make_contact, make_organization


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("jana@example.org", "jana@example.org"),
        ("  Jana.Novakova+invoices@Example.ORG\n", "jana.novakova+invoices@example.org"),
        ("support@localhost", "support@localhost"),
    ],
)
def test_normalise_email_strips_and_lower_cases(raw, normalised):
    assert normalise_email(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "jana",
        "@example.org",
        "jana@",
        "jana@@example.org",
        "jana@example@org",
        "jana novakova@example.org",
        "jana@example.org\r\nBcc: victim@example.org",
        "jana\x00@example.org",
        "alice@example.org)<bob@example.org>",
        "alice)<bob@example.org>",
        '"jana"@example.org',
        "jana@example..org",
        "jana@.example.org",
        "x" * 310 + "@example.org",
    ],
)
def test_normalise_email_refuses_anything_but_a_plain_address(raw):
    with pytest.raises(InvalidInputError):
        normalise_email(raw)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+420 601 123 456", "CZ", "+420601123456"),
        ("601 123 456", "CZ", "+420601123456"),
        ("00420601123456", "CZ", "+420601123456"),
        ("512 345 678", "PL", "+48512345678"),
        ("+420601123456", "PL", "+420601123456"),
    ],
)
def test_normalise_phone_gives_e164(raw, region, e164):
    assert normalise_phone(raw, region) == e164


@pytest.mark.parametrize("raw", ["", "12", "anonymous", "client:alice", "+420 123", "+999 601 123 456"])
def test_normalise_phone_refuses_invalid_numbers(raw):
    with pytest.raises(InvalidInputError):
        normalise_phone(raw, "CZ")


def test_create_contact_normalises_and_deduplicates(session):
    contact = create_contact(
        session=session,
        name=" Jana  Nováková ",
        emails=["Jana@Example.org", "jana@example.org"],
        phones=["601123456", "+420 601 123 456"],
        language="cs",
        now=NOW,
        region="CZ",
    )
    assert contact.id is not None
    assert contact.name == "Jana Nováková"
    assert [email.address for email in contact.emails] == ["jana@example.org"]
    assert [phone.number for phone in contact.phones] == ["+420601123456"]
    assert contact.created_at == contact.updated_at == NOW


def test_create_contact_with_taken_address_conflicts(session):
    make_contact(session, emails=["jana@example.org"])
    with pytest.raises(ConflictError):
        create_contact(
            session=session,
            name="X",
            emails=["JANA@example.org"],
            phones=[],
            language=None,
            now=NOW,
            region="CZ",
        )


def test_create_contact_turns_a_lost_race_for_an_address_into_a_conflict(session):
    # The check before inserting cannot see a concurrent transaction's row; the unique constraint can.
    # Simulated here with an unflushed row the check does not see.
    owner = make_contact(session, emails=[])
    with session.no_autoflush:
        session.add(ContactEmail(contact=owner, address="jana@example.org"))
        with pytest.raises(ConflictError):
            create_contact(
                session=session,
                name="X",
                emails=["jana@example.org"],
                phones=[],
                language=None,
                now=NOW,
                region="CZ",
            )
    assert find_contacts_by_email(session=session, address="jana@example.org") == [owner]
    assert session.scalars(select(Contact).where(Contact.name == "X")).all() == []
    assert make_contact(session, emails=["other@example.org"]).id is not None


def test_find_contacts_by_email_and_phone(session):
    jana = make_contact(session, emails=["jana@example.org"], phones=["+420601123456"])
    pavel = make_contact(session, emails=["pavel@example.org"], phones=["+420601123456"])

    assert find_contacts_by_email(session=session, address="JANA@example.org ") == [jana]
    assert find_contacts_by_email(session=session, address="nobody@example.org") == []
    assert find_contacts_by_phone(session=session, number="601 123 456", region="CZ") == [jana, pavel]
    assert find_contacts_by_phone(session=session, number="+420 777 000 111", region="CZ") == []


def second_drain(sessions, found: list[int], errors: list[BaseException], *, looked_up: bool) -> None:
    """A second drain meeting the sender "Nova@Example.cz" (through ``senders_looked_up`` when ``looked_up``)
    with more work in its batch, then committing; the contact's id goes to ``found``, an error to ``errors``."""
    from centrala.tickets.models import Organization

    with sessions() as second:
        try:
            with senders_looked_up(session=second, addresses=["Nova@Example.cz"]) if looked_up else nullcontext():
                contact = match_or_create_contact_by_email(session=second, address="Nova@Example.cz", name="", now=NOW)
            second.add(Organization(name="Other work of the same batch", created_at=NOW))
            second.commit()
            found.append(contact.id)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)


def test_two_transactions_creating_the_same_sender_end_with_one_contact_and_both_go_on(committed_db):
    """Two drains meeting the same new sender at once: the second finds the first's contact, and its own
    transaction (with the rest of its batch) still commits."""
    from centrala.core.db import get_sessionmaker
    from centrala.tickets.models import Organization

    sessions = get_sessionmaker()
    first = sessions()
    created = match_or_create_contact_by_email(session=first, address="nova@example.cz", name="Nová", now=NOW)
    found: list[int] = []
    errors: list[BaseException] = []

    # It waits for the first (SQLite: for the write lock; PostgreSQL: on the address's unique key).
    thread = threading.Thread(target=second_drain, args=(sessions, found, errors), kwargs={"looked_up": False})
    thread.start()
    time.sleep(0.5)
    first.commit()
    thread.join(30)
    first.close()

    assert errors == []
    assert found == [created.id]
    with sessions() as check:
        assert check.scalar(select(func.count()).select_from(ContactEmail)) == 1
        assert check.scalar(select(func.count()).select_from(Organization)) == 1


def test_two_drains_meeting_the_same_new_sender_end_with_one_contact_and_no_savepoint(committed_db):
    """Within ``senders_looked_up`` the second drain waits for the first's commit (PostgreSQL: the address it
    holds; SQLite: the write lock) and finds its contact; neither writes the new contact in a savepoint."""
    from centrala.core.db import get_sessionmaker
    from centrala.tickets.models import Organization

    sessions = get_sessionmaker()
    statements: list[str] = []
    engine = sessions().get_bind()

    def listener(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        first = sessions()
        with senders_looked_up(session=first, addresses=["nova@example.cz", "stara@example.cz"]):
            created = match_or_create_contact_by_email(session=first, address="nova@example.cz", name="Nová", now=NOW)
        first.flush()
        found: list[int] = []
        errors: list[BaseException] = []

        thread = threading.Thread(target=second_drain, args=(sessions, found, errors), kwargs={"looked_up": True})
        thread.start()
        time.sleep(0.5)
        assert found == [] and thread.is_alive()  # waiting for the first
        first.commit()
        thread.join(30)
        first.close()
    finally:
        event.remove(engine, "before_cursor_execute", listener)

    assert errors == []
    assert found == [created.id]
    assert not [statement for statement in statements if "SAVEPOINT" in statement.upper()]
    with sessions() as check:
        assert check.scalar(select(func.count()).select_from(ContactEmail)) == 1
        assert check.scalar(select(func.count()).select_from(Organization)) == 1


def match(session, address: str, name: str = "") -> Contact:
    return match_or_create_contact_by_email(session=session, address=address, name=name, now=NOW)


def test_a_batch_looks_its_senders_up_once_and_finds_the_contacts_it_creates(session):
    jana = make_contact(session, emails=["jana@example.org"])
    session.flush()
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    batch = ["Jana@Example.org", "nova@example.cz", "not an address"]
    with senders_looked_up(session=session, addresses=batch):
        event.listen(session.get_bind(), "before_cursor_execute", count)
        try:
            assert match(session, " JANA@example.org") is jana
            assert statements == []  # answered by the batch's one lookup
            nova = match(session, "nova@example.cz", "Nová")
            again = match(session, "Nova@Example.CZ")
            # A new sender's organisation (by the domain) was asked for with the owners, too.
            assert statements == []
        finally:
            event.remove(session.get_bind(), "before_cursor_execute", count)
    assert again is nova
    session.flush()
    addresses = session.scalars(select(ContactEmail.address).order_by(ContactEmail.address)).all()
    assert addresses == ["jana@example.org", "nova@example.cz"]
    # Outside the block, the database answers as before.
    assert match(session, "nova@example.cz") is nova


def test_a_sender_whose_creation_was_rolled_back_is_created_again(session):
    """A failed message's savepoint takes the contact it created with it: the next message from that address
    must not be handed the discarded contact."""
    with senders_looked_up(session=session, addresses=["nova@example.cz"]):
        with pytest.raises(RuntimeError), session.begin_nested():
            lost = match(session, "nova@example.cz")
            session.flush()
            raise RuntimeError("the message failed")
        kept = match(session, "nova@example.cz", "Nová")
    assert kept is not lost
    session.flush()
    assert session.scalars(select(Contact.name).join(ContactEmail)).all() == ["Nová"]


def test_a_new_sender_joins_the_organisation_owning_the_domain_even_one_added_a_moment_ago(session):
    acme = make_organization(session, name="Acme a.s.")
    acme.domains.append(OrganizationDomain(domain="acme.cz"))
    jana = make_contact(session, emails=["jana@example.org"])
    session.flush()
    beta = make_organization(session, name="Beta s.r.o.")
    with senders_looked_up(session=session, addresses=["petr@beta.cz", "olga@beta.cz"]):
        # Not written yet when the sender arrives: the domain of a second organisation.
        beta.domains.append(OrganizationDomain(domain="beta.cz"))
        assert match(session, "petr@beta.cz", "Petr").organization_id == beta.id
        # Written by now (the lookup's autoflush): the batch's earlier answer for beta.cz is not used either.
        assert match(session, "olga@beta.cz", "Olga").organization_id == beta.id

    session.flush()
    flushes: list[int] = []
    with senders_looked_up(session=session, addresses=["karel@acme.cz", "eva@elsewhere.cz"]):
        event.listen(session, "after_flush", lambda *_: flushes.append(1))
        jana.name = "Jana Nováková"
        karel = match(session, "karel@acme.cz", "Karel")
        eva = match(session, "eva@elsewhere.cz", "Eva")
    assert (karel.organization_id, eva.organization_id) == (acme.id, None)
    # With no domain pending, the lookup writes nothing of what the caller has pending (the drain's batch), nor
    # does creating the new senders: on PostgreSQL the transaction holds their addresses against other drains.
    assert flushes == []
