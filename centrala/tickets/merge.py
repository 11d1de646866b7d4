"""Duplicate contacts: suggestions, merging one into another with an audit entry, and undoing a merge.

A merge moves the merged contact's addresses, numbers, tickets, timeline and calls to the kept contact, fills
the kept contact's empty fields from it, and marks it merged. The audit entry records every id moved, so an
undo moves exactly those back (what arrived on the kept contact since stays there).

Services take a session and ``now``; they flush, never commit.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from difflib import SequenceMatcher

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from centrala.core.errors import ConflictError, InvalidInputError
from centrala.tickets.models import (
    Agent,
    Contact,
    ContactEmail,
    ContactMerge,
    ContactPhone,
    Interaction,
    Ticket,
)
from centrala.tickets.phone_models import Call

FILLED_FIELDS = ("name", "language", "organization_id", "segment")
_MOVED = (
    ("emails", ContactEmail),
    ("phones", ContactPhone),
    ("tickets", Ticket),
    ("interactions", Interaction),
)


def duplicate_suggestions(*, session: Session, contact: Contact, limit: int = 10) -> list[Contact]:
    """Other live contacts that are probably the same person: a shared phone number, the same mailbox name at
    another domain (jana.novak@gmail.com and jana.novak@firma.cz), or a similar name ("Jana Nováková",
    "Nováková Jana", "Jana Novakova")."""
    numbers = [phone.number for phone in contact.phones]
    conditions = []
    if numbers:
        conditions.append(
            Contact.id.in_(select(ContactPhone.contact_id).where(ContactPhone.number.in_(numbers)))
        )
    local_parts = {
        email.address.split("@")[0] for email in contact.emails if "." in email.address.split("@")[0]
    }
    for local in sorted(local_parts)[:5]:
        conditions.append(
            Contact.id.in_(
                select(ContactEmail.contact_id).where(
                    ContactEmail.address.like(f"{_escape(local)}@%", escape="\\")
                )
            )
        )
    words = contact.name.split()
    if words:
        # Candidates share a word of the name (any case); the comparison below decides.
        for word in {words[0], words[-1]}:
            if len(word) >= 2:
                conditions.append(func.lower(Contact.name).like(f"%{_escape(word.lower())}%", escape="\\"))
    if not conditions:
        return []
    candidates = session.scalars(
        select(Contact)
        .where(or_(*conditions), Contact.id != contact.id, Contact.merged_into_id.is_(None))
        .order_by(Contact.updated_at.desc())
        .limit(50)
        .options(selectinload(Contact.phones), selectinload(Contact.emails))
    ).all()
    own_numbers, own_locals = set(numbers), local_parts
    found = []
    for other in candidates:
        shares_number = bool(own_numbers & {phone.number for phone in other.phones})
        shares_mailbox = bool(own_locals & {email.address.split("@")[0] for email in other.emails})
        if shares_number or shares_mailbox or names_look_alike(contact.name, other.name):
            found.append(other)
        if len(found) >= limit:
            break
    return found


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _name_key(name: str) -> str:
    """A name without accents, case or word order: "Nováková Jana" and "jana novakova" give the same key."""
    plain = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(char for char in plain if not unicodedata.combining(char))
    return " ".join(sorted(plain.replace(",", " ").split()))


def names_look_alike(first: str, second: str) -> bool:
    """Whether two names are probably one person's, allowing accents, word order and a typo or two."""
    a, b = _name_key(first), _name_key(second)
    if not a or not b:
        return False
    return a == b or (min(len(a), len(b)) >= 6 and SequenceMatcher(None, a, b).ratio() >= 0.88)


def merge_contacts(
    *, session: Session, keep: Contact, drop: Contact, agent: Agent | None, now: datetime
) -> ContactMerge:
    """Merge ``drop`` into ``keep``; returns the audit entry.

    Raises:
        InvalidInputError: the same contact twice.
        ConflictError: either has already been merged into another contact.
    """
    if keep.id == drop.id:
        raise InvalidInputError("a contact cannot be merged into itself")
    if keep.merged_into_id is not None or drop.merged_into_id is not None:
        raise ConflictError("one of these contacts was already merged into another")
    moved: dict[str, object] = {}
    # A number both have stays once, on the kept contact; the merged one's copy is removed (and made again by
    # an undo).
    kept_numbers = set(session.scalars(select(ContactPhone.number).where(ContactPhone.contact_id == keep.id)))
    shared = list(
        session.scalars(
            select(ContactPhone).where(
                ContactPhone.contact_id == drop.id, ContactPhone.number.in_(kept_numbers)
            )
        )
    )
    moved["removed_numbers"] = [phone.number for phone in shared]
    for phone in shared:
        session.delete(phone)
    session.flush()
    for key, model in _MOVED:
        ids = list(session.scalars(select(model.id).where(model.contact_id == drop.id)))
        moved[key] = ids
        if ids:
            session.execute(update(model).where(model.id.in_(ids)).values(contact_id=keep.id))
    call_ids = list(session.scalars(select(Call.id).where(Call.contact_id == drop.id)))
    moved["calls"] = call_ids
    if call_ids:
        session.execute(update(Call).where(Call.id.in_(call_ids)).values(contact_id=keep.id))
    filled = {}
    for field in FILLED_FIELDS:
        if not getattr(keep, field) and getattr(drop, field):
            filled[field] = getattr(keep, field)
            setattr(keep, field, getattr(drop, field))
    moved["filled"] = filled
    moved["was_provisional"] = keep.is_provisional
    keep.is_provisional = keep.is_provisional and drop.is_provisional
    keep.updated_at = drop.updated_at = now
    drop.merged_into_id = keep.id
    entry = ContactMerge(
        kept_contact_id=keep.id,
        merged_contact_id=drop.id,
        agent_id=agent.id if agent else None,
        moved=moved,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    session.expire(keep)
    session.expire(drop)
    return entry


def undo_merge(*, session: Session, entry: ContactMerge, now: datetime) -> None:
    """Move back exactly what the merge moved and restore the kept contact's fields.

    Raises:
        ConflictError: already undone.
    """
    if entry.undone_at is not None:
        raise ConflictError("this merge was already undone")
    keep = session.get(Contact, entry.kept_contact_id)
    drop = session.get(Contact, entry.merged_contact_id)
    if keep is None or drop is None:
        raise ConflictError("a contact of this merge no longer exists")
    moved = entry.moved
    for key, model in (*_MOVED, ("calls", Call)):
        ids = list(moved.get(key, []))  # type: ignore[call-overload]
        if ids:
            session.execute(
                update(model).where(model.id.in_(ids), model.contact_id == keep.id).values(contact_id=drop.id)
            )
    for number in list(moved.get("removed_numbers", [])):  # type: ignore[call-overload]
        session.add(ContactPhone(contact_id=drop.id, number=number))
    for field, previous in dict(moved.get("filled", {})).items():  # type: ignore[call-overload]
        setattr(keep, field, previous)
    keep.is_provisional = bool(moved.get("was_provisional", keep.is_provisional))
    drop.merged_into_id = None
    keep.updated_at = drop.updated_at = now
    entry.undone_at = now
    session.flush()
    session.expire(keep)
    session.expire(drop)
