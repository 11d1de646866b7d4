"""Contacts: normalised e-mail addresses and phone numbers, creating contacts and finding them by either."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import phonenumbers
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from centrala.core.db import autoflush_only_for, has_pending, is_postgresql
from centrala.core.errors import ConflictError, InvalidInputError
from centrala.core.text import single_line
from centrala.tickets.models import Contact, ContactEmail, ContactPhone, OrganizationDomain

MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 200
MAX_LANGUAGE_LENGTH = 8
# Characters with a meaning in RFC 5322 address syntax (quoting, comments, groups, routes). We accept only
# plain dot-atom addresses; a parser that tolerates these is how CVE-2023-27043 misreads
# "alice@example.org)<bob@example.org>".
_ADDRESS_SPECIALS = frozenset('<>()[]\\,;:"')


# Loader options for a contact shown with its addresses, numbers and organisation, without a query per row.
WITH_CONTACT_DETAILS = (
    selectinload(Contact.emails),
    selectinload(Contact.phones),
    selectinload(Contact.organization),
)


# --- Normalisation ------------------------------------------------------------------------------------------


def normalise_email(address: str) -> str:
    """The address stripped and lower-cased; InvalidInputError unless it is a plain ``local@domain``."""
    address = address.strip().lower()
    if not address:
        raise InvalidInputError("the e-mail address is empty")
    if len(address) > MAX_EMAIL_LENGTH:
        raise InvalidInputError(f"the e-mail address is longer than {MAX_EMAIL_LENGTH} characters")
    if any(char.isspace() or not char.isprintable() for char in address):
        # Refuses CR/LF too: a stored address ends up in headers we generate (CVE-2024-6923).
        raise InvalidInputError("the e-mail address contains spaces or control characters")
    if any(char in _ADDRESS_SPECIALS for char in address):
        raise InvalidInputError("the e-mail address contains characters not allowed in a plain address")
    local, at, domain = address.partition("@")
    if not at or "@" in domain:
        raise InvalidInputError("the e-mail address must contain exactly one @")
    if not local or not domain:
        raise InvalidInputError("the e-mail address needs a name before and a domain after the @")
    if any(not label for label in domain.split(".")):
        raise InvalidInputError("the e-mail address has an empty part in its domain")
    return address


def normalise_phone(number: str, region: str) -> str:
    """The number in E.164 (``+420601123456``), a national form read in ``region``; InvalidInputError."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as error:
        raise InvalidInputError(f"{number!r} is not a phone number") from error
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInputError(f"{number!r} is not a valid phone number (read in region {region})")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# --- Lookup -------------------------------------------------------------------------------------------------


def find_contacts_by_email(*, session: Session, address: str) -> list[Contact]:
    """The contact owning ``address`` (normalised first) as a list of zero or one."""
    normalised = normalise_email(address)
    statement = (
        select(Contact)
        .join(ContactEmail, ContactEmail.contact_id == Contact.id)
        .where(ContactEmail.address == normalised)
        .options(*WITH_CONTACT_DETAILS)
    )
    return list(session.scalars(statement))


def find_contacts_by_phone(*, session: Session, number: str, region: str) -> list[Contact]:
    """Every contact reachable at ``number`` (normalised in ``region`` first); a shared line has several."""
    normalised = normalise_phone(number, region)
    statement = (
        select(Contact)
        .where(Contact.id.in_(select(ContactPhone.contact_id).where(ContactPhone.number == normalised)))
        .order_by(Contact.id)
        .options(*WITH_CONTACT_DETAILS)
    )
    return list(session.scalars(statement))


# --- Creation -----------------------------------------------------------------------------------------------


def create_contact(
    *,
    session: Session,
    name: str,
    emails: Sequence[str],
    phones: Sequence[str],
    language: str | None,
    now: datetime,
    region: str,
) -> Contact:
    """Create a contact with its addresses and numbers, all normalised.

    Raises:
        InvalidInputError: an address, number or the language is malformed.
        ConflictError: an address already belongs to a contact (also when a concurrent transaction took it
            first), so callers matching by address can look the owner up again.
    """
    addresses = _unique(normalise_email(address) for address in emails)
    numbers = _unique(normalise_phone(number, region) for number in phones)
    name = single_line(name)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(f"the name is longer than {MAX_NAME_LENGTH} characters")
    language = (language or "").strip() or None
    if language is not None and len(language) > MAX_LANGUAGE_LENGTH:
        raise InvalidInputError(f"the language tag is longer than {MAX_LANGUAGE_LENGTH} characters")
    if addresses:
        taken = session.scalars(
            select(ContactEmail.address).where(ContactEmail.address.in_(addresses))
        ).first()
        if taken is not None:
            raise ConflictError(f"{taken} already belongs to another contact")
    contact = Contact(
        name=name,
        language=language,
        created_at=now,
        updated_at=now,
        emails=[ContactEmail(address=address) for address in addresses],
        phones=[ContactPhone(number=number) for number in numbers],
    )
    try:
        with session.begin_nested():
            session.add(contact)
    except IntegrityError as error:
        raise ConflictError(
            "an e-mail address of the new contact already belongs to another contact"
        ) from error
    return contact


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# --- Matching inbound senders -------------------------------------------------------------------------------


# session.info key: who owns each address a batch's senders write from, looked up once for the transaction.
_KNOWN_SENDERS_KEY = "centrala.contacts_by_email"
# The new senders' addresses a PostgreSQL transaction holds against other drains (``senders_looked_up``).
_HELD_ADDRESSES_KEY = "centrala.held_sender_addresses"
# The organisation (id or None) owning each of the new senders' e-mail domains, looked up with their owners.
_DOMAIN_OWNERS_KEY = "centrala.organization_by_domain"


@contextmanager
def senders_looked_up(*, session: Session, addresses: Iterable[str]) -> Iterator[None]:
    """Within the block, ``match_or_create_contact_by_email`` answers for ``addresses`` without a query of its
    own: one query finds who owns each of them, for a batch of inbound mail, instead of one query per message.

    Only for a transaction that does not move addresses between contacts (merge, edit) meanwhile: a contact
    created in the block is remembered; one whose creation was rolled back (a failed message's savepoint) is
    looked up again. The organisations owning the new senders' domains are asked for in the same way, until
    the session adds, changes or removes a domain. Invalid addresses are left out; the message that has one
    fails as it would without this. On PostgreSQL the transaction holds the addresses nobody owns yet until it
    ends, against other drains.
    """
    wanted = set()
    for address in addresses:
        try:
            wanted.add(normalise_email(address))
        except InvalidInputError:
            continue
    known: dict[str, Contact | None] = dict.fromkeys(wanted)
    if wanted:
        known.update(_owners(session=session, addresses=wanted))
    if is_postgresql(session):
        # Other drains may be creating the same new senders. Each unknown address is held until this transaction
        # ends (an advisory lock, taken in one order by every drain, so that none waits in a circle) and looked
        # up again: a drain that created it meanwhile has committed it. While held no drain creates it, so a new
        # contact is written with the batch, without a savepoint of its own.
        unknown = sorted(address for address, contact in known.items() if contact is None)
        if unknown:
            _hold_addresses(session=session, addresses=unknown)
            known.update(_owners(session=session, addresses=unknown))
            session.info[_HELD_ADDRESSES_KEY] = frozenset(unknown)
    new_domains = {address.rsplit("@", 1)[1] for address, contact in known.items() if contact is None}
    if new_domains:
        # A new sender's contact joins the organisation owning their domain: asked once for the batch too.
        owners = dict(
            session.execute(
                select(OrganizationDomain.domain, OrganizationDomain.organization_id).where(
                    OrganizationDomain.domain.in_(new_domains)
                )
            ).all()
        )
        session.info[_DOMAIN_OWNERS_KEY] = {domain: owners.get(domain) for domain in new_domains}
    session.info[_KNOWN_SENDERS_KEY] = known
    try:
        yield
    finally:
        session.info.pop(_KNOWN_SENDERS_KEY, None)
        session.info.pop(_HELD_ADDRESSES_KEY, None)
        session.info.pop(_DOMAIN_OWNERS_KEY, None)


def _owners(*, session: Session, addresses: Iterable[str]) -> list[tuple[str, Contact]]:
    owners = session.execute(
        select(ContactEmail.address, Contact)
        .join(Contact, ContactEmail.contact_id == Contact.id)
        .where(ContactEmail.address.in_(list(addresses)))
    )
    return [(address, contact) for address, contact in owners]


def _hold_addresses(*, session: Session, addresses: Iterable[str]) -> None:
    """PostgreSQL: hold each address against other holders until the transaction ends, in ascending key order."""
    keys = sorted({_address_lock_key(address) for address in addresses})
    session.connection().execute(
        text("SELECT count(pg_advisory_xact_lock(key)) FROM unnest(CAST(:keys AS bigint[])) AS key"), {"keys": keys}
    )


def _address_lock_key(address: str) -> int:
    digest = hashlib.blake2b(f"centrala contact e-mail {address}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def match_or_create_contact_by_email(*, session: Session, address: str, name: str, now: datetime) -> Contact:
    """The contact who owns ``address``, or a new one, attached to the organisation owning its e-mail domain."""
    address = normalise_email(address)
    contact = _known_sender(session=session, address=address)
    if contact is not None:
        if name and not contact.name:
            contact.name = single_line(name)[:MAX_NAME_LENGTH]
            contact.updated_at = now
        return contact
    contact = Contact(
        name=single_line(name)[:MAX_NAME_LENGTH],
        organization_id=_domain_owner(session=session, domain=address.rsplit("@", 1)[1]),
        created_at=now,
        updated_at=now,
        emails=[ContactEmail(address=address)],
    )
    if not is_postgresql(session) or address in session.info.get(_HELD_ADDRESSES_KEY, ()):
        # SQLite has one writer, and on PostgreSQL this transaction holds the address against other drains
        # (``senders_looked_up``): no drain creates the same contact meanwhile (one created by hand at that
        # moment fails the batch's write, and its messages go again one at a time, each in a savepoint).
        # Written by the next flush (a query's, or the batch's), not one of its own.
        session.add(contact)
    else:
        try:
            # PostgreSQL: another worker's transaction may be creating the same contact. In a savepoint, losing
            # that race costs this one insert, not the caller's transaction (a drain's whole batch).
            with session.begin_nested():
                session.add(contact)
        except IntegrityError:
            contact = _contact_by_email(session=session, address=address)
            if contact is None:
                raise
    known = session.info.get(_KNOWN_SENDERS_KEY)
    if known is not None:
        known[address] = contact
    return contact


def _domain_owner(*, session: Session, domain: str) -> int | None:
    """The id of the organisation owning ``domain``: what ``senders_looked_up`` found, unless a domain is being
    added, changed or removed in the session; then (and outside the block) the database's answer."""
    known = session.info.get(_DOMAIN_OWNERS_KEY)
    if known is not None and domain in known and not has_pending(session, OrganizationDomain):
        return known[domain]
    with autoflush_only_for(session, OrganizationDomain):
        return session.scalar(
            select(OrganizationDomain.organization_id).where(OrganizationDomain.domain == domain)
        )


@event.listens_for(Session, "after_flush")
def _forget_domain_owners_on_flush(session: Session, _flush_context: object) -> None:
    """A flush that writes an organisation's domain ends what ``senders_looked_up`` found about the domains."""
    if _DOMAIN_OWNERS_KEY in session.info and has_pending(session, OrganizationDomain):
        del session.info[_DOMAIN_OWNERS_KEY]


def _known_sender(*, session: Session, address: str) -> Contact | None:
    """The owner of ``address``: from ``senders_looked_up`` when it has the answer, else from the database."""
    known = session.info.get(_KNOWN_SENDERS_KEY)
    if known is None or address not in known:
        return _contact_by_email(session=session, address=address)
    contact = known[address]
    if contact is not None and inspect(contact).session is not session:
        # Created in a savepoint that was rolled back since: ask the database.
        return _contact_by_email(session=session, address=address)
    return contact


def _contact_by_email(*, session: Session, address: str) -> Contact | None:
    return session.scalar(select(Contact).join(ContactEmail).where(ContactEmail.address == address))
