"""How new rows get their ids: given before they are written, never one another's or a written row's."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from centrala.core.db import next_ids
from centrala.tickets.models import Channel, Contact, Direction, Interaction
from tests.factories import NOW, make_contact, make_ticket


def _note(ticket, text: str, **columns) -> Interaction:
    return Interaction(
        ticket=ticket, contact=ticket.contact, channel=Channel.NOTE, direction=Direction.INTERNAL, text=text,
        occurred_at=NOW, created_at=NOW, **columns,
    )


@pytest.fixture
def inserts(session):
    """The INSERT statements sent while the test runs, with how many rows each carried."""
    sent: list[tuple[str, int]] = []

    def record(_conn, _cursor, statement, parameters, _context, executemany) -> None:
        if statement.startswith("INSERT"):
            sent.append((statement.split("(")[0].split()[-1], len(parameters) if executemany else 1))

    bind = session.get_bind()
    event.listen(bind, "before_cursor_execute", record)
    yield sent
    event.remove(bind, "before_cursor_execute", record)


def test_a_flush_writes_a_tables_new_rows_together(session, inserts):
    ticket = make_ticket(session)
    inserts.clear()
    session.add_all([_note(ticket, f"note {number}") for number in range(5)])

    session.flush()

    # One statement for the five (SQLite had inserted each with its own, to learn its id).
    assert [table for table, _rows in inserts] == ["interaction"]


def test_new_rows_are_numbered_past_every_written_and_given_id_in_the_order_added(session):
    ticket = make_ticket(session)
    written = _note(ticket, "written first")
    session.add(written)
    session.flush()
    [given] = next_ids(session, Interaction, 1)
    added = [_note(ticket, "a"), _note(ticket, "given", id=given), _note(ticket, "b"), _note(ticket, "c")]

    session.add_all(added)
    session.flush()

    assert added[1].id == given
    others = [added[0].id, added[2].id, added[3].id]
    assert others == sorted(others)
    assert min(others) > max(written.id, given)
    session.expire_all()
    rows = session.execute(select(Interaction.id, Interaction.text).where(Interaction.ticket_id == ticket.id))
    assert dict(rows.all()) == {written.id: "written first", **{row.id: row.text for row in added}}


def test_a_row_without_an_id_never_takes_one_given_beforehand(session):
    ticket = make_ticket(session)
    [given] = next_ids(session, Interaction, 1)
    alone = _note(ticket, "added first, without an id")
    session.add(alone)
    session.add(_note(ticket, "given", id=given))

    session.flush()

    assert alone.id != given


def test_ids_of_rows_rolled_back_with_a_savepoint_are_free_again(session):
    ticket = make_ticket(session)
    with pytest.raises(RuntimeError), session.begin_nested():
        session.add_all([_note(ticket, "lost 1"), _note(ticket, "lost 2")])
        session.flush()
        raise RuntimeError("the message failed")
    kept = [_note(ticket, "kept 1"), _note(ticket, "kept 2")]
    session.add_all(kept)
    session.flush()

    texts = session.scalars(select(Interaction.text).where(Interaction.ticket_id == ticket.id).order_by(Interaction.id))
    assert texts.all() == ["kept 1", "kept 2"]


def test_rows_of_several_tables_are_numbered_in_one_flush(session, inserts):
    first = make_contact(session, emails=["jana@example.cz"])
    ticket = make_ticket(session, contact=first)
    inserts.clear()
    session.add_all([_note(ticket, "one"), _note(ticket, "two")])
    contact = Contact(name="Nová", created_at=NOW, updated_at=NOW)
    session.add(contact)

    session.flush()

    assert contact.id > first.id
    assert sorted(table for table, _rows in inserts) == ["contact", "interaction"]
