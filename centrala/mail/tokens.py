"""Threading tokens: our Message-IDs and per-ticket reply addresses, carrying an HMAC so they cannot be forged.

A customer's client copies our Message-ID into In-Reply-To/References and sends answers to our Reply-To
address; either names the ticket. Both carry a MAC over the ticket id (and the mailbox, for the address) under
the secret key, so that knowing or guessing a ticket number is not enough to write into someone else's ticket.
The domain of a Message-ID is not covered: ids stay valid when a mailbox moves to another domain.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

# 128 bits in Message-IDs (nobody types them); 80 bits in reply addresses, which people see and local parts
# are limited to 64 octets (RFC 5321 §4.5.3.1.1). Either is far beyond online guessing.
MESSAGE_ID_MAC_BYTES = 16
REPLY_ADDRESS_MAC_BYTES = 10
MAX_LOCAL_PART = 64
MAX_TICKET_DIGITS = 12

_NONCE = re.compile(r"[a-z0-9]{1,64}")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?", re.IGNORECASE)
_MESSAGE_ID = re.compile(
    r"c\.(?P<ticket>[1-9][0-9]{0,11})\.(?P<nonce>[a-z0-9]{1,64})\.(?P<mac>[a-z2-7]{26})"
    r"@(?P<domain>[^@<>\s]{1,253})"
)
_REPLY_TAG = re.compile(r"t(?P<ticket>[1-9][0-9]{0,11})-(?P<mac>[a-z2-7]{16})")


def new_nonce() -> str:
    """A random nonce for ``make_message_id``: 80 bits in lower-case base32, so each Message-ID is unique."""
    return _b32(secrets.token_bytes(10))


def make_message_id(*, ticket_id: int, nonce: str, secret: str | bytes, domain: str) -> str:
    """Our signed Message-ID for a message on ``ticket_id``: ``<c.{ticket_id}.{nonce}.{mac}@{domain}>``.

    Raises:
        ValueError: the ticket id, nonce or domain cannot appear in a Message-ID.
    """
    ticket_text = _ticket_text(ticket_id)
    if not _NONCE.fullmatch(nonce):
        raise ValueError("the nonce must be 1-64 lower-case letters or digits")
    if not _DOMAIN.fullmatch(domain):
        raise ValueError("not a domain for a Message-ID")
    mac = _mac(secret, b"message-id", f"{ticket_text}.{nonce}", MESSAGE_ID_MAC_BYTES)
    return f"<c.{ticket_text}.{nonce}.{mac}@{domain.lower()}>"


def verify_message_id(message_id: str, secret: str | bytes) -> int | None:
    """The ticket id in one of our Message-IDs (angle brackets optional) whose MAC verifies, else None."""
    value = message_id.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    match = _MESSAGE_ID.fullmatch(value)
    if match is None:
        return None
    expected = _mac(secret, b"message-id", f"{match['ticket']}.{match['nonce']}", MESSAGE_ID_MAC_BYTES)
    if not hmac.compare_digest(expected, match["mac"]):
        return None
    return int(match["ticket"])


def make_reply_address(*, mailbox: str, ticket_id: int, secret: str | bytes) -> str:
    """The reply address of a ticket at ``mailbox``: ``support@x`` -> ``support+t42-{mac}@x``.

    Our SMTP server accepts ``support+anything@x`` for the mailbox ``support@x``; the tag names the ticket.

    Raises:
        ValueError: the mailbox is not a plain address or the result would be too long for a local part.
    """
    mailbox = _plain_mailbox(mailbox)
    if mailbox is None:
        raise ValueError("not a mailbox address")
    local, _, domain = mailbox.partition("@")
    ticket_text = _ticket_text(ticket_id)
    mac = _mac(secret, b"reply-address", f"{mailbox}\x00{ticket_text}", REPLY_ADDRESS_MAC_BYTES)
    tagged = f"{local}+t{ticket_text}-{mac}"
    if len(tagged) > MAX_LOCAL_PART:
        raise ValueError("the mailbox's local part is too long for a reply address")
    return f"{tagged}@{domain}"


def verify_reply_address(address: str, secret: str | bytes) -> tuple[str, int] | None:
    """``(mailbox, ticket_id)`` for one of our reply addresses whose MAC verifies, else None.

    Matching is case-insensitive: some relays lower-case local parts, and the MAC is lower-case base32.
    """
    address = address.strip().lower()
    if len(address) > 320 or address.count("@") != 1:
        return None
    local, _, domain = address.partition("@")
    # Split at the first "+", as the SMTP server does when it maps a plus-address to its mailbox.
    base, plus, tag = local.partition("+")
    if not plus:
        return None
    match = _REPLY_TAG.fullmatch(tag)
    mailbox = _plain_mailbox(f"{base}@{domain}")
    if match is None or mailbox is None:
        return None
    expected = _mac(secret, b"reply-address", f"{mailbox}\x00{match['ticket']}", REPLY_ADDRESS_MAC_BYTES)
    if not hmac.compare_digest(expected, match["mac"]):
        return None
    return mailbox, int(match["ticket"])


def _mac(secret: str | bytes, purpose: bytes, payload: str, size: int) -> str:
    # The purpose separates the two token kinds: a MAC from one is never valid as the other.
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the secret key is empty")
    digest = hmac.new(key, b"centrala/" + purpose + b"\x00" + payload.encode(), hashlib.sha256).digest()
    return _b32(digest[:size])


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _ticket_text(ticket_id: int) -> str:
    if isinstance(ticket_id, bool) or not isinstance(ticket_id, int) or ticket_id <= 0:
        raise ValueError("the ticket id must be a positive integer")
    text = str(ticket_id)
    if len(text) > MAX_TICKET_DIGITS:
        raise ValueError("the ticket id is too large")
    return text


def _plain_mailbox(address: str) -> str | None:
    address = address.strip().lower()
    local, at, domain = address.partition("@")
    if not at or not local or "+" in local or not _DOMAIN.fullmatch(domain):
        return None
    if any(not (c.isascii() and c.isprintable()) or c.isspace() or c in '<>()[]\\,;:"@' for c in local):
        return None
    return address
