"""Parse raw MIME bytes into a ParsedEmail with the stdlib parser (``email.policy.default``)."""

from __future__ import annotations

import email
import email.policy
from email import errors
import html as html_module
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

import nh3

from centrala.core.errors import MessageRejected

# RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">"; we also accept ids without "@" seen in the wild.
_MSG_ID = re.compile(r"<([^<>\s]{1,900})>")
_TAG = re.compile(r"<[^>]*>")
_BLANK_LINES = re.compile(r"\n{3,}")
MAX_ADDRESS_LENGTH = 320


@dataclass(frozen=True)
class ParsedAttachment:
    """A file carried by the message."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    is_inline: bool = False


@dataclass(frozen=True)
class ParsedEmail:
    """What the rest of Centrala needs to know about one inbound message."""

    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    from_address: str
    from_name: str
    to: list[str]
    cc: list[str]
    subject: str
    date: datetime | None
    text: str
    html: str | None
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    @property
    def referenced_ids(self) -> list[str]:
        """Message-IDs this message answers, nearest first (In-Reply-To, then References newest to oldest)."""
        seen: list[str] = []
        for message_id in [*self.in_reply_to, *reversed(self.references)]:
            if message_id not in seen:
                seen.append(message_id)
        return seen


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse ``raw``; raises MessageRejected when the message cannot become an interaction."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception as error:  # the parser is meant not to raise; anything that does is bad input
        raise MessageRejected(f"unparseable message: {type(error).__name__}") from error
    assert isinstance(message, EmailMessage)
    defects = [type(defect).__name__ for defect in message.defects]

    from_name, from_address = _sender(message, defects)
    if not from_address:
        raise MessageRejected("no usable sender address in From")
    text, html = _body(message, defects)
    return ParsedEmail(
        message_id=_first_message_id(_header(message, "Message-ID", defects)),
        in_reply_to=_message_ids(_header(message, "In-Reply-To", defects)),
        references=_message_ids(_header(message, "References", defects)),
        from_address=from_address,
        from_name=from_name,
        to=_addresses(message, "To", defects),
        cc=_addresses(message, "Cc", defects),
        subject=_one_line(_header(message, "Subject", defects))[:500],
        date=_date(message, defects),
        text=text,
        html=html,
        attachments=_attachments(message, defects),
        defects=defects,
    )


def _header(message: EmailMessage, name: str, defects: list[str]) -> str:
    try:
        value = message.get(name)
    except Exception as error:  # malformed header values raise from the header registry
        defects.append(f"{name}: {type(error).__name__}")
        raw_values = [v for k, v in message.raw_items() if k.lower() == name.lower()]
        return str(raw_values[0]) if raw_values else ""
    return "" if value is None else str(value)


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _message_ids(value: str) -> list[str]:
    return _MSG_ID.findall(value)[:100]


def _first_message_id(value: str) -> str | None:
    ids = _message_ids(value)
    if ids:
        return ids[0]
    value = value.strip()
    return value[:900] if value and not any(c.isspace() for c in value) else None


def is_plausible_address(address: str) -> bool:
    """A syntactic check of an addr-spec: one @, both sides non-empty, no spaces or control characters."""
    if not address or len(address) > MAX_ADDRESS_LENGTH or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if not local or not domain or "." not in domain.strip(".") and domain != "localhost":
        return False
    return not any(c.isspace() or ord(c) < 32 or c in "<>()[],;:\\\"" for c in address)


def _sender(message: EmailMessage, defects: list[str]) -> tuple[str, str]:
    for name in ("From", "Sender", "Reply-To"):
        try:
            header = message.get(name)
            addresses = getattr(header, "addresses", ()) if header is not None else ()
        except Exception as error:
            defects.append(f"{name}: {type(error).__name__}")
            continue
        # One author only. "alice@example.org)<bob@example.org>" (CVE-2023-27043) parses as alice with an
        # invalid-address defect, the second address silently dropped: refuse rather than guess the author.
        plausible = [a for a in addresses if is_plausible_address(a.addr_spec)]
        raw_value = next((str(v) for k, v in message.raw_items() if k.lower() == name.lower()), "")
        dropped_address = raw_value.count("@") > len(addresses) and any(
            isinstance(defect, errors.InvalidHeaderDefect) for defect in header.defects
        )
        if len(addresses) == 1 and plausible and not dropped_address:
            return _one_line(plausible[0].display_name)[:200], plausible[0].addr_spec.lower()
        if addresses:
            defects.append(f"{name}: ambiguous or malformed address")
    return "", ""


def _addresses(message: EmailMessage, name: str, defects: list[str]) -> list[str]:
    try:
        header = message.get(name)
        addresses = getattr(header, "addresses", ()) if header is not None else ()
    except Exception as error:
        defects.append(f"{name}: {type(error).__name__}")
        return []
    return [a.addr_spec.lower() for a in addresses if is_plausible_address(a.addr_spec)][:1000]


def _date(message: EmailMessage, defects: list[str]) -> datetime | None:
    try:
        header = message.get("Date")
        value = getattr(header, "datetime", None) if header is not None else None
    except Exception as error:
        defects.append(f"Date: {type(error).__name__}")
        return None
    if value is None or value.tzinfo is None:
        return None
    return value


def _decoded_text(part: EmailMessage, defects: list[str]) -> str:
    try:
        content = part.get_content()
        return content if isinstance(content, str) else content.decode("utf-8", "replace")
    except (LookupError, UnicodeError, AssertionError, ValueError) as error:
        # Unknown or mislabelled charset: keep the text readable and record that we guessed.
        defects.append(f"body: {type(error).__name__}, decoded as utf-8 with replacement")
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def _body(message: EmailMessage, defects: list[str]) -> tuple[str, str | None]:
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    html = nh3.clean(_decoded_text(html_part, defects)) if html_part is not None else None
    if text_part is not None:
        text = _decoded_text(text_part, defects)
    elif html is not None:
        text = html_to_text(html)
    else:
        text = ""
    return text.replace("\r\n", "\n").strip(), html


def html_to_text(html: str) -> str:
    """Plain text from sanitised HTML: block ends become line breaks, tags are dropped."""
    html = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr|h[1-6])>", "\n", html)
    text = nh3.clean(html, tags=set())
    return _BLANK_LINES.sub("\n\n", html_module.unescape(text)).strip()


def _attachments(message: EmailMessage, defects: list[str]) -> list[ParsedAttachment]:
    found: list[ParsedAttachment] = []
    try:
        parts = list(message.iter_attachments())
    except Exception as error:
        defects.append(f"attachments: {type(error).__name__}")
        return found
    for part in parts:
        try:
            data = part.get_payload(decode=True)
            if data is None:  # message/rfc822 and other containers
                data = part.as_bytes()
            filename = part.get_filename() or ""
        except Exception as error:
            defects.append(f"attachment: {type(error).__name__}")
            continue
        content_id = _first_message_id(str(part.get("Content-ID", "")))
        found.append(
            ParsedAttachment(
                filename=_one_line(filename)[:255],
                content_type=part.get_content_type(),
                data=data,
                content_id=content_id,
                is_inline=part.get_content_disposition() == "inline",
            )
        )
    return found
