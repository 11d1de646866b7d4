"""Compose outbound e-mail (agent replies, acknowledgements, notifications) as the bytes we store and send.

Every header value we set is checked first, because CPython 3.11.7 predates the fix for CVE-2024-6923: its
generator writes a CR or LF inside a value out as a line break, i.e. as a header of the attacker's choosing.
"""

from __future__ import annotations

import email.utils
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy

import nh3

from centrala.core.errors import HeaderInjectionError, InvalidInputError

MAX_REFERENCES = 20
MAX_MESSAGE_ID_LENGTH = 250
MAX_HEADER_VALUE = 2000
MAX_ADDRESS_LENGTH = 320
MAX_SUBJECT_LENGTH = 500
# RFC 3834 §5: the values a responder or generator sets; "no" is the default and never written.
AUTO_SUBMITTED_VALUES = frozenset({"auto-replied", "auto-generated"})

# "[#T-1042]" as we write it, "[T-1042]" as some clients rewrite it.
_SUBJECT_TAG = re.compile(r"\[#?T-\d{1,12}\]", re.IGNORECASE)
# Reply and forward prefixes of common clients in our languages and their neighbours'.
_REPLY_PREFIX = re.compile(
    r"^\s*((re|fw|fwd|aw|wg|odp|pd|sv|vs|antw|відп|від|отв)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE
)
_ADDRESS_SPECIALS = frozenset('<>()[]\\,;:"@ ')
_MESSAGE_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
# Printable ASCII words separated by single spaces.
_PLAIN_HEADER_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")


class _HeaderClasses(HeaderRegistry):
    """The stdlib's header registry, keeping the class it makes for a header name: it makes a new one on each
    lookup, and setting a header looks twice (a fifth of the time composing a message took)."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        super().map_to_type(name, cls)
        self._made.clear()


class _OutboundPolicy(EmailPolicy):
    """``email.policy.SMTP`` that folds msg-id headers between ids only.

    The stdlib folds In-Reply-To and References as unstructured text and turns an id longer than a line into
    RFC 2047 encoded-words, which no client matches against a Message-ID: threading breaks. Our ids are
    validated printable ASCII without spaces, so folding between them is all that is needed (RFC 5322 §3.6.4).
    """

    def fold(self, name: str, value: str) -> str:
        if name.lower() in _MESSAGE_ID_HEADERS:
            return self._fold_message_ids(name, str(value))
        if (line := self._as_one_line(name, value)) is not None:
            return line
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in _MESSAGE_ID_HEADERS:
            return self._fold_message_ids(name, str(value)).encode("ascii")
        if (line := self._as_one_line(name, value)) is not None:
            return line.encode("ascii")
        return super().fold_binary(name, value)

    def _as_one_line(self, name: str, value: str) -> str | None:
        """The header as it is, when it is plain ASCII that fits one line: what the stdlib's folder writes for
        it too, which it finds only by parsing the value again (most of the cost of writing a message)."""
        text = str(value)
        line = f"{name}: {text}"
        if (
            len(line) > (self.max_line_length or 78)
            or not _PLAIN_HEADER_TEXT.fullmatch(text)
            or "=?" in text
        ):
            return None
        return line + self.linesep

    def _fold_message_ids(self, name: str, value: str) -> str:
        lines = [f"{name}:"]
        for message_id in value.split():
            if (
                len(lines[-1]) + 1 + len(message_id) > (self.max_line_length or 78)
                and lines[-1] != f"{name}:"
            ):
                lines.append("")
            lines[-1] += " " + message_id
        return self.linesep.join(lines) + self.linesep


# CRLF line ends (the bytes we store are the bytes we send, RFC 5321 §2.3.8) and 7-bit bodies
# (quoted-printable or base64), so no relay without 8BITMIME has to convert what we hand it.
OUTBOUND_POLICY = _OutboundPolicy(linesep="\r\n", cte_type="7bit", header_factory=_HeaderClasses())


@dataclass(frozen=True)
class MailAddress:
    """An address with an optional display name, as in ``"Support" <support@example.com>``."""

    address: str
    name: str = ""


@dataclass(frozen=True)
class OutboundAttachment:
    """A file to attach."""

    filename: str
    content_type: str
    data: bytes


def check_header_value(header: str, value: str) -> str:
    """``value`` unchanged when it may appear in a header we generate; raises HeaderInjectionError otherwise.

    Refused: CR, LF and every other control character (Unicode category Cc), and the Unicode line and
    paragraph separators, which ``str.splitlines`` (used by the stdlib's header handling) also breaks on.
    """
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise HeaderInjectionError(
                f"the {header} header value contains a line break or control character"
            )
    if len(value) > MAX_HEADER_VALUE:
        raise InvalidInputError(f"the {header} header value is longer than {MAX_HEADER_VALUE} characters")
    return value


def check_address(header: str, address: str) -> str:
    """A plain ``local@domain`` in printable ASCII; raises HeaderInjectionError or InvalidInputError.

    We validate addresses ourselves rather than trust ``email.utils``: 3.11.7 predates the fix for
    CVE-2023-27043, and we send only what we would also store.
    """
    check_header_value(header, address)
    local, at, domain = address.partition("@")
    if (
        not at
        or not local
        or not domain
        or len(address) > MAX_ADDRESS_LENGTH
        or not address.isascii()
        or any(char in _ADDRESS_SPECIALS for char in local + domain)
        or any(not label for label in domain.split("."))
    ):
        raise InvalidInputError(f"the {header} address is not a plain ASCII address")
    return address


def is_safe_message_id(message_id: str) -> bool:
    """Whether ``message_id`` (without angle brackets) can be written into In-Reply-To or References."""
    return (
        0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH
        and message_id.isascii()
        and message_id.isprintable()
        and not any(char in "<> \t" for char in message_id)
    )


def reply_subject(subject: str, ticket_number: str, *, max_length: int = MAX_SUBJECT_LENGTH) -> str:
    """``Re: <subject> [#T-1042]``, with earlier reply prefixes and ticket tags removed (none doubled).

    Whitespace, CR and LF included, is collapsed; the subject is shortened so that the tag always survives.
    """
    tag = f" [#{ticket_number}]"
    subject = _SUBJECT_TAG.sub(" ", subject)
    subject = _REPLY_PREFIX.sub("", " ".join(subject.split()))
    subject = " ".join(subject.split())
    room = max_length - len("Re: ") - len(tag)
    return f"Re: {subject[:room].rstrip()}{tag}" if subject else f"Re:{tag}"


def compose_email(
    *,
    sender: MailAddress,
    to: Sequence[MailAddress],
    subject: str,
    message_id: str,
    date: datetime,
    text: str,
    html: str | None = None,
    cc: Sequence[MailAddress] = (),
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: str | None = None,
    attachments: Sequence[OutboundAttachment] = (),
) -> EmailMessage:
    """An e-mail ready to be stored and sent; ``message_id`` and ``references`` without angle brackets.

    ``references`` are kept first and last (the thread's root and the newest), at most MAX_REFERENCES
    (RFC 5322 §3.6.4 lets a long chain be shortened); ``in_reply_to`` is appended when it is missing.
    ``auto_submitted`` (``auto-replied`` for acknowledgements, ``auto-generated`` for notifications) marks the
    message as automatic (RFC 3834 §5) and asks Exchange not to answer it with its own auto-replies.
    ``html`` is sanitised.

    Raises:
        HeaderInjectionError: a header value contains CR, LF or another control character.
        InvalidInputError: an address, Message-ID or other value is malformed.
    """
    if not to:
        raise InvalidInputError("a message needs at least one recipient")
    if date.tzinfo is None:
        raise InvalidInputError("the Date must be an aware datetime")
    if auto_submitted is not None and auto_submitted not in AUTO_SUBMITTED_VALUES:
        raise InvalidInputError(f"Auto-Submitted is one of {sorted(AUTO_SUBMITTED_VALUES)}")
    from_header = _address_header("From", sender)
    to_header = [_address_header("To", item) for item in to]
    cc_header = [_address_header("Cc", item) for item in cc]
    check_header_value("Subject", subject)
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidInputError(f"the subject is longer than {MAX_SUBJECT_LENGTH} characters")
    message_id = _message_id("Message-ID", message_id)
    parent = _message_id("In-Reply-To", in_reply_to) if in_reply_to is not None else None
    chain = [_message_id("References", item) for item in references]
    if parent is not None and parent not in chain:
        chain.append(parent)
    chain = _shorten_references(list(dict.fromkeys(chain)))
    if reply_to is not None:
        check_address("Reply-To", reply_to)
    files = [_checked_attachment(item) for item in attachments]

    message = EmailMessage(policy=OUTBOUND_POLICY)
    message["From"] = from_header
    message["To"] = to_header
    if cc_header:
        message["Cc"] = cc_header
    if reply_to is not None:
        message["Reply-To"] = reply_to
    message["Subject"] = _inert_encoded_words(subject)
    message["Date"] = email.utils.format_datetime(date)
    message["Message-ID"] = message_id
    if parent is not None:
        message["In-Reply-To"] = parent
    if chain:
        message["References"] = " ".join(chain)
    if auto_submitted is not None:
        message["Auto-Submitted"] = auto_submitted
        # Microsoft Exchange's own loop prevention: no out-of-office or other auto-replies to this message.
        message["X-Auto-Response-Suppress"] = "All"
    message.set_content(text)
    if html is not None:
        message.add_alternative(nh3.clean(html), subtype="html")
    for filename, maintype, subtype, data in files:
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


def _address_header(header: str, item: MailAddress) -> Address:
    check_address(header, item.address)
    name = check_header_value(header, item.name).strip()
    local, _, domain = item.address.partition("@")
    return Address(display_name=_inert_encoded_words(name), username=local, domain=domain)


def _inert_encoded_words(text: str) -> str:
    """``text`` with RFC 2047 openers broken by a zero-width space, so that it goes out as the text it is.

    The stdlib's header registry decodes anything that looks like an encoded word in a value we set, even
    "=?x?B?..?=" in a customer's subject: unknown charsets come back as surrogates that the folder cannot
    encode (UnicodeEncodeError), and "=?utf-8?Q?=0D=0A?=" as a line break inside the header value.
    """
    return text.replace("=?", "=\u200b?")


def _message_id(header: str, value: str) -> str:
    check_header_value(header, value)
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if not is_safe_message_id(value):
        raise InvalidInputError(f"the {header} value is not a usable Message-ID")
    return f"<{value}>"


def _shorten_references(chain: list[str]) -> list[str]:
    if len(chain) <= MAX_REFERENCES:
        return chain
    return [chain[0], *chain[-(MAX_REFERENCES - 1) :]]


def _checked_attachment(item: OutboundAttachment) -> tuple[str, str, str, bytes]:
    filename = (
        " ".join(check_header_value("Content-Disposition", item.filename).split())[:255] or "attachment"
    )
    maintype, slash, subtype = item.content_type.strip().lower().partition("/")
    token = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
    # Containers (multipart/*, message/*) cannot be attached from bytes; they travel as opaque files.
    if (
        not slash
        or not token.fullmatch(maintype)
        or not token.fullmatch(subtype)
        or maintype
        in (
            "multipart",
            "message",
        )
    ):
        maintype, subtype = "application", "octet-stream"
    return filename, maintype, subtype, item.data
