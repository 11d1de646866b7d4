"""Merging duplicate contacts (e.g. a caller's provisional contact into the customer they turn out to be), with an
audit entry that undoes exactly what moved."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from centrala.core.errors import ConflictError, InvalidInputError
from centrala.tickets.merge import duplicate_suggestions, merge_contacts, undo_merge
from centrala.tickets.models import Channel, Contact, ContactMerge, Interaction, Ticket
from centrala.tickets.phone_models import Call, CallerMatch
from tests.factories import NOW, make_agent, make_contact, make_ticket


@pytest.fixture()
def pair(session):
    jana = make_contact(session, name="Jana Nováková", emails=["jana@example.cz"], language=None)
    caller = make_contact(
        session, name="+420 601 123 456", emails=[], phones=["+420601123456"], language="cs"
    )
    caller.is_provisional = True
    mail_ticket = make_ticket(session, contact=jana, subject="Faktura")
    call_ticket = make_ticket(session, contact=caller, subject="Missed call")
    session.add(
        Interaction(
            ticket=call_ticket,
            contact=caller,
            channel=Channel.PHONE,
            direction="inbound",
            text="Call",
            occurred_at=NOW,
            created_at=NOW,
        )
    )
    session.add(
        Call(
            call_sid="CA" + "4" * 32,
            direction="inbound",
            state="completed",
            outcome="missed",
            contact_id=caller.id,
            caller_match=CallerMatch.PROVISIONAL,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    session.flush()
    return jana, caller, mail_ticket, call_ticket


def test_a_provisional_caller_is_merged_into_the_customer_and_the_merge_undone(session, pair):
    jana, caller, mail_ticket, call_ticket = pair
    agent, _ = make_agent(session)
    assert [c.id for c in duplicate_suggestions(session=session, contact=jana)] == []
    entry = merge_contacts(session=session, keep=jana, drop=caller, agent=agent, now=NOW)

    session.refresh(jana)
    assert [p.number for p in jana.phones] == ["+420601123456"]
    assert jana.language == "cs" and jana.name == "Jana Nováková" and not jana.is_provisional
    assert {t.contact_id for t in session.scalars(select(Ticket))} == {jana.id}
    assert session.scalars(select(Call)).one().contact_id == jana.id
    assert session.get(Contact, caller.id).merged_into_id == jana.id
    assert entry.agent_id == agent.id and entry.moved["phones"] and entry.moved["calls"]

    later = make_ticket(session, contact=jana, subject="After the merge")
    undo_merge(session=session, entry=entry, now=NOW)
    session.expire_all()
    assert session.get(Ticket, call_ticket.id).contact_id == caller.id
    assert session.get(Ticket, later.id).contact_id == jana.id  # what came since stays
    assert session.get(Ticket, mail_ticket.id).contact_id == jana.id
    assert session.get(Contact, jana.id).phones == [] and session.get(Contact, jana.id).language is None
    assert session.get(Contact, caller.id).merged_into_id is None
    assert session.scalars(select(Call)).one().contact_id == caller.id
    with pytest.raises(ConflictError):
        undo_merge(session=session, entry=session.get(ContactMerge, entry.id), now=NOW)


def test_merges_refuse_the_same_contact_and_a_merged_one(session, pair):
    jana, caller, *_ = pair
    with pytest.raises(InvalidInputError):
        merge_contacts(session=session, keep=jana, drop=jana, agent=None, now=NOW)
    merge_contacts(session=session, keep=jana, drop=caller, agent=None, now=NOW)
    other = make_contact(session, name="Someone")
    with pytest.raises(ConflictError):
        merge_contacts(session=session, keep=other, drop=session.get(Contact, caller.id), agent=None, now=NOW)


def test_duplicates_share_a_number_or_a_name(session):
    first = make_contact(session, name="Petr Malý", phones=["+420777000111"])
    same_number = make_contact(session, name="P. Malý", phones=["+420777000111"])
    same_name = make_contact(session, name="petr malý")
    make_contact(session, name="Someone else", phones=["+420777000222"])
    found = {c.id for c in duplicate_suggestions(session=session, contact=first)}
    assert found == {same_number.id, same_name.id}
