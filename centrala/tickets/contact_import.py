"""Importing contacts from a CSV file: each row creates a contact or updates the one it already is.

Columns (by header, in any order, names case-insensitive): ``name``, ``email``/``emails``, ``phone``/``phones``,
``organisation``/``organization``/``company``, ``segment``; others are ignored. A cell may hold several
addresses or numbers separated by ``;`` or ``,`` (and addresses also by spaces). A row is matched to an
existing contact by any of its e-mail addresses, else by its phone numbers, and that contact is updated, never
duplicated: the row's name, organisation and segment replace the stored ones when given, its addresses and
numbers are added to the stored ones.
"""

from __future__ import annotations

import csv
import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from centrala.core.errors import InvalidInputError
from centrala.tickets.contacts import (
    MAX_NAME_LENGTH,
    WITH_CONTACT_DETAILS,
    normalise_email,
    normalise_phone,
)
from centrala.tickets.models import Contact, ContactEmail, ContactPhone, Organization

MAX_SEGMENT_LENGTH = 32
MAX_ORGANIZATION_LENGTH = 200

_COLUMNS = {
    "name": "name",
    "full name": "name",
    "email": "emails",
    "emails": "emails",
    "e-mail": "emails",
    "e-mails": "emails",
    "phone": "phones",
    "phones": "phones",
    "telephone": "phones",
    "organisation": "organization",
    "organization": "organization",
    "company": "organization",
    "segment": "segment",
}
_EMAIL_SEPARATORS = re.compile(r"[;,\s]+")
_PHONE_SEPARATORS = re.compile(r"[;,]+")


class ImportOutcome(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ContactRow:
    """One data row of the file; ``number`` counts rows as a spreadsheet does (the header is row 1)."""

    number: int
    values: dict[str, str]
    raw: list[str]

    @property
    def name(self) -> str:
        return " ".join(self.values.get("name", "").split())

    @property
    def emails(self) -> list[str]:
        return [part for part in _EMAIL_SEPARATORS.split(self.values.get("emails", "")) if part]

    @property
    def phones(self) -> list[str]:
        return [
            part.strip() for part in _PHONE_SEPARATORS.split(self.values.get("phones", "")) if part.strip()
        ]

    @property
    def organization(self) -> str:
        return " ".join(self.values.get("organization", "").split())

    @property
    def segment(self) -> str:
        return self.values.get("segment", "").strip()


class ContactCsv:
    """The rows of a contact CSV file: the delimiter (``,``, ``;`` or tab) is detected, a UTF-8 BOM skipped."""

    def __init__(self, handle: TextIO) -> None:
        sample = handle.read(64 * 1024)
        handle.seek(0)
        try:
            dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        self._reader = csv.reader(handle, dialect)
        try:
            header = next(self._reader)
        except StopIteration:
            raise InvalidInputError("the file is empty: the first row names the columns") from None
        self.header = header
        self._fields = {
            index: _COLUMNS.get(name.strip().lower().lstrip("\ufeff")) for index, name in enumerate(header)
        }
        if not {"emails", "phones"} & set(self._fields.values()):
            raise InvalidInputError(
                "the first row must name the columns, with at least an email or a phone column "
                f"(found: {', '.join(header) or 'nothing'})"
            )

    def __iter__(self) -> Iterator[ContactRow]:
        for number, cells in enumerate(self._reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            values: dict[str, str] = {}
            for index, cell in enumerate(cells):
                field = self._fields.get(index)
                if field is not None:
                    values[field] = f"{values[field]};{cell}" if values.get(field) else cell
            yield ContactRow(number=number, values=values, raw=cells)


def import_contact(*, session: Session, row: ContactRow, region: str, now: datetime) -> ImportOutcome:
    """Create the contact of ``row`` or update the existing one it matches; flushes.

    Raises:
        InvalidInputError: the row cannot be imported; the message says why (nothing of it is stored).
    """
    emails = list(dict.fromkeys(_checked(normalise_email, value, "e-mail address") for value in row.emails))
    phones = list(
        dict.fromkeys(
            _checked(lambda v: normalise_phone(v, region), value, "phone number") for value in row.phones
        )
    )
    if not emails and not phones:
        raise InvalidInputError("no e-mail address or phone number to recognise the contact by")
    name, segment, organization_name = row.name, row.segment, row.organization
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(f"the name is longer than {MAX_NAME_LENGTH} characters")
    if len(segment) > MAX_SEGMENT_LENGTH:
        raise InvalidInputError(f"the segment is longer than {MAX_SEGMENT_LENGTH} characters")
    if len(organization_name) > MAX_ORGANIZATION_LENGTH:
        raise InvalidInputError(f"the organisation is longer than {MAX_ORGANIZATION_LENGTH} characters")

    contact = _matching_contact(session=session, emails=emails, phones=phones)
    organization = (
        _organization(session=session, name=organization_name, now=now) if organization_name else None
    )
    if contact is None:
        contact = Contact(
            name=name,
            segment=segment or None,
            organization=organization,
            created_at=now,
            updated_at=now,
            emails=[ContactEmail(address=address) for address in emails],
            phones=[ContactPhone(number=number) for number in phones],
        )
        session.add(contact)
        session.flush()
        return ImportOutcome.CREATED

    changed = False
    if name and name != contact.name:
        contact.name, changed = name, True
    if segment and segment != contact.segment:
        contact.segment, changed = segment, True
    if organization is not None and contact.organization_id != organization.id:
        contact.organization, changed = organization, True
    known_emails = {item.address for item in contact.emails}
    known_phones = {item.number for item in contact.phones}
    for address in emails:
        if address not in known_emails:
            contact.emails.append(ContactEmail(address=address))
            changed = True
    for number in phones:
        if number not in known_phones:
            contact.phones.append(ContactPhone(number=number))
            changed = True
    if changed and contact.is_provisional and name:
        # A provisional contact was made from a caller's number alone; the file now says who it is.
        contact.is_provisional = False
    if not changed:
        return ImportOutcome.UNCHANGED
    contact.updated_at = now
    session.flush()
    return ImportOutcome.UPDATED


def _checked(normalise, value: str, what: str) -> str:  # type: ignore[no-untyped-def]
    try:
        return normalise(value)
    except InvalidInputError as error:
        raise InvalidInputError(f"{what} {value!r}: {error}") from None


def _matching_contact(*, session: Session, emails: list[str], phones: list[str]) -> Contact | None:
    """The one contact the row's addresses, else its numbers, belong to; InvalidInputError when they point at
    several contacts (the row cannot say which one it is)."""
    if emails:
        owners = set(session.scalars(select(ContactEmail.contact_id).where(ContactEmail.address.in_(emails))))
        if len(owners) > 1:
            raise InvalidInputError(
                f"the e-mail addresses belong to different contacts ({', '.join(map(str, sorted(owners)))})"
            )
        if owners:
            return _load(session, owners.pop())
    if phones:
        owners = set(
            session.scalars(
                select(ContactPhone.contact_id)
                .join(Contact, Contact.id == ContactPhone.contact_id)
                .where(ContactPhone.number.in_(phones), Contact.merged_into_id.is_(None))
            )
        )
        if len(owners) > 1:
            raise InvalidInputError(
                f"the phone number is shared by several contacts ({', '.join(map(str, sorted(owners)))}); "
                "add an e-mail address to say which one this is"
            )
        if owners:
            return _load(session, owners.pop())
    return None


def _load(session: Session, contact_id: int) -> Contact:
    return session.scalars(
        select(Contact).where(Contact.id == contact_id).options(*WITH_CONTACT_DETAILS)
    ).one()


def _organization(*, session: Session, name: str, now: datetime) -> Organization:
    """The organisation of that name (case-insensitive), created when there is none."""
    organization = session.scalars(
        select(Organization)
        .where(func.lower(Organization.name) == name.lower())
        .order_by(Organization.id)
        .limit(1)
    ).first()
    if organization is None:
        organization = Organization(name=name, created_at=now)
        session.add(organization)
        session.flush()
    return organization
