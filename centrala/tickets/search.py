"""Search across tickets, contacts and what was said: a ticket number, an address or a phone number finds its
ticket or contact directly; words find interactions by full-text search (SQLite FTS5 with diacritics folded,
PostgreSQL's text search), newest relevant first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session, selectinload

from centrala.core.errors import InvalidInputError
from centrala.tickets.contacts import normalise_phone
from centrala.tickets.models import (
    Contact,
    ContactEmail,
    ContactPhone,
    Interaction,
    Ticket,
    parse_ticket_number,
)

MAX_QUERY_LENGTH = 200
MAX_RESULTS = 30
_WORD = re.compile(r"\w+", re.UNICODE)
# The expression of migration 0012's index, so that PostgreSQL uses it.
# "<" and ">" become spaces: PostgreSQL's parser reads "<word>...</word>" as markup and drops the words inside.
FOLD_FROM, FOLD_TO = "áäčďéěëíľĺňóôöřŕšťúůüýžąćęłńśźż<>", "aacdeeeillnooorrstuuuyzacelnszz  "
_PG_VECTOR = (
    "to_tsvector('simple', translate(lower(coalesce(interaction.subject, '') || ' ' || "
    f"coalesce(interaction.text, '')), '{FOLD_FROM}', '{FOLD_TO}'))"
)


@dataclass(frozen=True)
class SearchResults:
    tickets: list[Ticket]
    contacts: list[Contact]
    interactions: list[Interaction]


def search(
    *,
    session: Session,
    query: str,
    region: str,
    queue_ids: Sequence[int] | None = None,
    limit: int = MAX_RESULTS,
) -> SearchResults:
    """What ``query`` finds. With ``queue_ids`` (an agent's queues) only tickets and messages of those queues,
    of no queue yet, are returned; None means every queue.

    Raises:
        InvalidInputError: an empty or over-long query.
    """
    query = " ".join(query.split())
    if not query:
        raise InvalidInputError("type something to search for")
    if len(query) > MAX_QUERY_LENGTH:
        raise InvalidInputError(f"a search is at most {MAX_QUERY_LENGTH} characters")

    def visible(statement):  # type: ignore[no-untyped-def]
        if queue_ids is None:
            return statement
        return statement.where(or_(Ticket.queue_id.is_(None), Ticket.queue_id.in_(list(queue_ids))))

    tickets: list[Ticket] = []
    ticket_id = parse_ticket_number(query)
    if ticket_id is not None:
        tickets = list(session.scalars(visible(select(Ticket).where(Ticket.id == ticket_id))))
    tickets += [
        ticket
        for ticket in session.scalars(
            visible(select(Ticket).where(func.lower(Ticket.subject).contains(query.lower(), autoescape=True)))
            .order_by(Ticket.updated_at.desc())
            .limit(limit)
        )
        if ticket not in tickets
    ]
    return SearchResults(
        tickets=tickets[:limit],
        contacts=_contacts(session=session, query=query, region=region, limit=limit),
        interactions=_interactions(session=session, query=query, visible=visible, limit=limit),
    )


def _contacts(*, session: Session, query: str, region: str, limit: int) -> list[Contact]:
    conditions = [
        func.lower(Contact.name).contains(query.lower(), autoescape=True),
        Contact.id.in_(
            select(ContactEmail.contact_id).where(
                ContactEmail.address.contains(query.lower(), autoescape=True)
            )
        ),
    ]
    try:
        number = normalise_phone(query, region)
    except InvalidInputError:
        number = None
    if number:
        conditions.append(
            Contact.id.in_(select(ContactPhone.contact_id).where(ContactPhone.number == number))
        )
    return list(
        session.scalars(
            select(Contact)
            .where(or_(*conditions), Contact.merged_into_id.is_(None))
            .order_by(Contact.updated_at.desc())
            .limit(limit)
            .options(selectinload(Contact.emails), selectinload(Contact.phones))
        )
    )


def _interactions(*, session: Session, query: str, visible, limit: int) -> list[Interaction]:  # type: ignore[no-untyped-def]
    words = _WORD.findall(query)
    if not words:
        return []
    statement = select(Interaction).outerjoin(Ticket, Interaction.ticket_id == Ticket.id)
    if session.get_bind().dialect.name == "postgresql":
        folded = " ".join(words).lower().translate(str.maketrans(FOLD_FROM, FOLD_TO))
        matched = text(f"{_PG_VECTOR} @@ plainto_tsquery('simple', :words)").bindparams(words=folded)
        statement = statement.where(matched)
    else:
        # Each word quoted, so FTS5's query syntax (AND, NEAR, *, ^...) in the input is plain text.
        phrase = " ".join('"' + word.replace('"', '""') + '"' for word in words)
        hits = text("SELECT rowid FROM interaction_fts WHERE interaction_fts MATCH :phrase").bindparams(
            phrase=phrase
        )
        statement = statement.where(Interaction.id.in_(hits))
    return list(
        session.scalars(
            visible(statement)
            .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
            .limit(limit)
            .options(selectinload(Interaction.ticket))
        )
    )
