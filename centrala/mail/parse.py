"""Parse raw MIME bytes into a ParsedEmail: bounded, tolerant of real-world mail, and never crashing on it.

The stdlib parser (``email.policy.default``) does the MIME work. Around it this module

- bounds the work: nesting depth, parts, header fields, addresses per header and a deadline, because the
  parser recurses once per nesting level (RecursionError near 975 levels, quadratic time before that) and the
  header registry takes seconds on huge address lists. What exceeds a bound is rejected (``MessageRejected``);
- repairs what the stdlib leaves broken: bare CR and 8-bit legacy bytes in the header section, unknown or
  mislabelled charsets (the declared one, then UTF-8, then a guess among Central/East European code pages);
- picks the body (RFC 2046 §5.1.4) and keeps everything else as attachments (enclosed messages as ``.eml``,
  winmail.dat as it is), sanitises HTML with an explicit nh3 allow-list that blocks remote images, classifies
  the sender (auto-reply, bounce, list) and finds the new part of a reply.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.feedparser
import email.policy
import email.utils
import html as html_module
import mimetypes
import re
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email import errors
from email.message import EmailMessage, Message

import nh3

from centrala.core.errors import MessageRejected
from centrala.mail import quotes
from centrala.mail.classify import Classification, classify_email
from centrala.mail.headers import RawHeaders, first_value

# Re-exported: callers turned HTML into text with parse.html_to_text before quotes.py existed.
html_to_text = quotes.html_to_text

# RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">"; we also accept ids without "@" seen in the wild.
# No control characters: PostgreSQL refuses NUL in text, and a Message-ID is a key we store and look up.
_MSG_ID = re.compile(r"<([^<>\s\x00-\x1f\x7f]{1,900})>")
MAX_ADDRESS_LENGTH = 320
_NOT_IN_ADDRESS = frozenset('<>()[],;:\\"\ufffd')
# A From (or Sender, Reply-To) longer than this is not one author's address; it goes no further than a defect.
MAX_SENDER_CHARS = 2000
# RFC 5322 §2.1.1: a line is at most 998 octets; longer ones are parsed, and noted.
MAX_LINE_OCTETS = 998
# Only this much of a Subject is decoded (we keep 500 characters); the rest could only cost time.
MAX_SUBJECT_SOURCE = 8000
# A Content-ID longer than this is no real client's (they use 30 to 80 characters); the column holds 255.
MAX_CONTENT_ID = 255
# Charset guessing looks at this much of a body; the choice is the same for the rest.
CHARSET_SAMPLE = 65_536

UrlFor = Mapping[str, str] | Callable[[str], str | None]


@dataclass(frozen=True)
class ParseLimits:
    """Bounds on the work one message may cause; a message exceeding one is rejected."""

    max_bytes: int = 64 * 1024 * 1024  # the raw message; SMTP refuses more than settings.max_message_bytes
    max_depth: int = 50  # nested multiparts and enclosed messages
    max_parts: int = 1000  # MIME parts in the whole message
    max_headers: int = 1000  # fields in one header section
    max_addresses: int = 1000  # addresses in one address header
    max_header_chars: int = 65_536  # one address header, for the stdlib's structured header parser
    # Content-Type, -Disposition and -Transfer-Encoding go through the slow structured parser (~25 µs a
    # character when hostile), Content-Type already while the message is parsed.
    max_mime_header_chars: int = 8192  # one such field
    max_mime_header_total: int = 131_072  # all of them in the message
    seconds: float = 10.0  # for the whole message, checked between steps


DEFAULT_LIMITS = ParseLimits()


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
    classification: Classification = field(default_factory=Classification)
    # The new part of a reply (quotes and signature stripped); ``text`` keeps everything.
    visible_text: str = ""

    @property
    def referenced_ids(self) -> list[str]:
        """Message-IDs this message answers, nearest first (In-Reply-To, then References newest to oldest)."""
        seen: list[str] = []
        for message_id in [*self.in_reply_to, *reversed(self.references)]:
            if message_id not in seen:
                seen.append(message_id)
        return seen

    def with_cid_urls(self, url_for: UrlFor) -> ParsedEmail:
        """A copy whose HTML loads inline images from ``url_for(content_id)``, once attachments are stored."""
        if self.html is None:
            return self
        return replace(self, html=rewrite_cid_urls(self.html, url_for))


class _Deadline:
    """Wall-time budget for one message, checked between steps (a step itself is bounded by the limits)."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seconds = seconds
        self._end = clock() + seconds

    def check(self, step: str) -> None:
        if self._clock() >= self._end:
            raise MessageRejected(f"parsing exceeds the time limit of {self._seconds:g} s (at {step})")


def parse_email(
    raw: bytes,
    *,
    mail_from: str | None = None,
    cid_url: UrlFor | None = None,
    limits: ParseLimits = DEFAULT_LIMITS,
    clock: Callable[[], float] = time.monotonic,
) -> ParsedEmail:
    """Parse ``raw``; raises MessageRejected when the message cannot become an interaction.

    Args:
        raw: the message as received (RFC 5322 bytes).
        mail_from: the SMTP envelope sender, when known; "" means the null sender ``<>`` of notifications.
        cid_url: maps a Content-ID to the URL the console serves it from; ``cid:`` references in the HTML are
            rewritten with it. Without it they stay, for ``ParsedEmail.with_cid_urls`` once files are stored.
        limits: bounds on the work this message may cause.
        clock: monotonic seconds, for the deadline.
    """
    deadline = _Deadline(limits.seconds, clock)
    if len(raw) > limits.max_bytes:
        raise MessageRejected(f"message of {len(raw)} bytes exceeds the limit of {limits.max_bytes}")
    defects: list[str] = []
    raw = _repair_header_section(raw, defects)
    _check_mime_headers(raw, limits)
    _check_multipart_nesting(raw, limits)
    message = _parse_bytes(raw)
    deadline.check("MIME parsing")
    _check_structure(message, limits, deadline)
    headers = RawHeaders(message)
    _check_address_headers(headers, limits)
    defects.extend(type(defect).__name__ for defect in message.defects)

    from_name, from_address = _sender(headers, defects)
    if not from_address:
        raise MessageRejected("no usable sender address in From")
    classification = classify_email(message, mail_from, headers=headers)
    deadline.check("classification")
    content = _Content()
    _collect(message, content, defects, deadline)
    text, html = _render(content.segments, deadline)
    if html is not None and cid_url is not None:
        html = rewrite_cid_urls(html, cid_url)
    deadline.check("body")
    visible = quotes.visible_text(text)  # text is already derived from the HTML where needed
    deadline.check("quote stripping")
    return ParsedEmail(
        message_id=_first_message_id(headers.first("Message-ID")),
        in_reply_to=_message_ids(headers.first("In-Reply-To")),
        references=_message_ids(headers.first("References")),
        from_address=from_address,
        from_name=from_name,
        to=_addresses(headers, "To", defects),
        cc=_addresses(headers, "Cc", defects),
        subject=_one_line(decode_header_text(headers.first("Subject")[:MAX_SUBJECT_SOURCE]))[:500],
        date=_date(headers, defects),
        text=text,
        html=html,
        attachments=content.attachments,
        defects=defects,
        classification=classification,
        visible_text=visible,
    )


# --- before and around the stdlib parser --------------------------------------------------------------------

# The raw scans below run over the whole message before the parser, so they are written for the regex engine's
# fast path: a pattern that starts with a literal character is tried only where that character occurs, while
# one starting with "^" or "\b" is tried at every offset (a fifth of the parse time went there).
# An empty line ends the header section (RFC 5322 §2.1); see _header_section_end for the CR before it.
_EMPTY_LINE = re.compile(rb"\n\r?\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_BOUNDARY_PARAM = re.compile(rb'(?i)\bboundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))')
_BOUNDARY_WORD = b"boundary"
# A delimiter line (RFC 2046 §5.1.1), at the start of the message or after a line break.
_DELIMITER = rb"--([^\r\n]{0,300})\r?$"
_DELIMITER_AT_START = re.compile(rb"(?m)" + _DELIMITER)
_DELIMITER_AFTER_BREAK = re.compile(rb"(?m)\n" + _DELIMITER)
# A field with its folded continuation lines (RFC 5322 §2.2.3); the pattern cannot backtrack.
_MIME_HEADER_FIELD = (
    rb"(content-(?:type|disposition|transfer-encoding))[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*"
)
_MIME_HEADER_AT_START = re.compile(rb"(?i)" + _MIME_HEADER_FIELD)
_MIME_HEADER_AFTER_BREAK = re.compile(rb"(?i)\n" + _MIME_HEADER_FIELD)


def _repair_header_section(raw: bytes, defects: list[str]) -> bytes:
    """Fix the top-level header section before the stdlib sees it: bare CR and 8-bit legacy bytes."""
    end = _header_section_end(raw)
    head = raw[:end]
    original = head
    if _BARE_CR.search(head):
        # RFC 5322 §2.2 allows CR only before LF. The stdlib would end the header section at a bare CR and
        # read the remaining fields as body; a space keeps them fields without inventing new ones.
        head = _BARE_CR.sub(b" ", head)
        defects.append("bare CR in the header section replaced by a space")
    if any(len(line) > MAX_LINE_OCTETS for line in head.split(b"\n")):
        defects.append(f"header line longer than {MAX_LINE_OCTETS} octets (RFC 5322 §2.1.1)")
    if not head.isascii():
        head = _header_section_as_utf8(head, defects)
    # Unchanged, the message is not copied (for a large one that is its whole size again).
    return raw if head is original else head + raw[end:]


def _header_section_end(raw: bytes) -> int:
    """Where the header section ends: the line break before the first empty line (CRLF or LF), else the end."""
    match = _EMPTY_LINE.search(raw)
    if match is None:
        return len(raw)
    start = match.start()
    return start - 1 if start and raw[start - 1] == ord("\r") else start


def _header_section_as_utf8(head: bytes, defects: list[str]) -> bytes:
    """Raw 8-bit header lines re-encoded as UTF-8, which the stdlib reads (RFC 6532); legacy ones guessed."""
    lines = head.split(b"\n")
    for index, line in enumerate(lines):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            text, note = decode_bytes(line, None)
            lines[index] = text.encode("utf-8")
            defects.append(f"8-bit header: {note}")
    return b"\n".join(lines)


def _check_mime_headers(raw: bytes, limits: ParseLimits) -> None:
    """Bound the Content-* fields that the stdlib parses structurally, before it parses any of them.

    A raw scan of every line that starts such a field, anywhere in the message: a body line that merely looks
    like one only counts against a generous budget.
    """
    total = 0
    for match in _matches_at_line_starts(_MIME_HEADER_AT_START, _MIME_HEADER_AFTER_BREAK, raw):
        size = match.end() - match.start(1)
        if size > limits.max_mime_header_chars:
            name = match.group(1).decode("ascii")
            raise MessageRejected(f"{name} of {size} characters exceeds {limits.max_mime_header_chars}")
        total += size
        if total > limits.max_mime_header_total:
            raise MessageRejected(f"MIME headers exceed {limits.max_mime_header_total} characters in total")


def _check_multipart_nesting(raw: bytes, limits: ParseLimits) -> None:
    """Reject too many parts or too deep nesting from a cheap scan of boundary lines, before the parser runs.

    Every part starts with a delimiter line, so their count bounds the parts. Boundaries are tracked as the
    stdlib does (RFC 2046 §5.1.1): a delimiter of an outer boundary implicitly closes the inner ones.
    """
    declared = {m.group(1) or m.group(2) for m in _boundary_params(raw)}
    if not declared:
        return
    if len(declared) > limits.max_parts:
        raise MessageRejected(f"{len(declared)} multipart boundaries exceed the limit of {limits.max_parts}")
    stack: list[bytes] = []
    delimiters = 0
    for match in _matches_at_line_starts(_DELIMITER_AT_START, _DELIMITER_AFTER_BREAK, raw):
        token = match.group(1).rstrip(b" \t")  # RFC 2046 §5.1.1: transport padding may follow
        closing = token.endswith(b"--") and token[:-2] in declared
        name = token[:-2] if closing else token
        if name not in declared:
            continue
        delimiters += not closing
        if delimiters > limits.max_parts:
            raise MessageRejected(f"MIME parts exceed the limit of {limits.max_parts}")
        if name in stack:
            del stack[stack.index(name) + 1 :]
            if closing:
                stack.pop()
        elif not closing:
            stack.append(name)
            if len(stack) > limits.max_depth:
                raise MessageRejected(f"MIME nesting exceeds the limit of {limits.max_depth} levels")


def _matches_at_line_starts(
    at_start: re.Pattern[bytes], after_break: re.Pattern[bytes], raw: bytes
) -> Iterator[re.Match[bytes]]:
    """What ``(?m)^`` + pattern finds, in order: ``at_start`` at offset 0, ``after_break`` (the pattern behind
    a LF, the only line break ``(?m)^`` knows) from there on. Group numbers are those of the pattern."""
    first = at_start.match(raw)
    if first is not None:
        yield first
    yield from after_break.finditer(raw, first.end() if first is not None else 0)


def _boundary_params(raw: bytes) -> Iterator[re.Match[bytes]]:
    """What ``_BOUNDARY_PARAM.finditer(raw)`` finds, in order, tried only where "boundary" occurs in any case.

    The lower-cased copy is dropped before the parser runs, whose own peak is higher (bench/memory.py's 25 MiB
    message peaks at the same 63 MiB with it as without).
    """
    lowered = raw.lower()  # ASCII only, as (?i) on bytes
    position = lowered.find(_BOUNDARY_WORD)
    while position >= 0:
        match = _BOUNDARY_PARAM.match(raw, position)  # \b looks at the octet before position too
        if match is not None:
            yield match
            position = lowered.find(_BOUNDARY_WORD, match.end())
        else:
            position = lowered.find(_BOUNDARY_WORD, position + 1)


class _ReusingHeadersPolicy(email.policy.EmailPolicy):
    """``email.policy.default``, except that a header value read again is not parsed again.

    The stdlib builds a new structured header object on every ``get()``, and reading a message's parts asks for
    the same Content-Type and Content-Transfer-Encoding values many times (``get_body``, ``walk``,
    ``get_content``): most of the parser's time went there. Header objects are immutable, so equal
    ``(name, value)`` pairs can share one.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:  # type: ignore[override]
        if hasattr(value, "name") or len(value) > _CACHED_HEADER_MAX:
            return super().header_fetch_parse(name, value)
        key = (name, value)
        header = _HEADER_CACHE.get(key)
        if header is None:
            if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
                _HEADER_CACHE.clear()
            header = _HEADER_CACHE[key] = super().header_fetch_parse(name, value)
        return header


_CACHED_HEADER_MAX = 2_000
_HEADER_CACHE_SIZE = 20_000
_HEADER_CACHE: dict[tuple[str, str], str] = {}
PARSE_POLICY = _ReusingHeadersPolicy()


# The parser is fed this much at a time (the stdlib's own reader uses 8,192 characters).
_FEED_CHUNK = 64 * 1024


def _parse_bytes(raw: bytes) -> EmailMessage:
    """``email.message_from_bytes`` with the same result, fed in chunks: ``message_from_bytes`` decodes the
    whole message to one string and reads it through a StringIO, which holds a copy at four bytes a
    character; for a 25 MiB message that was 150 MB more at the peak."""
    try:
        parser = email.feedparser.BytesFeedParser(policy=PARSE_POLICY)
        view = memoryview(raw)
        for start in range(0, len(raw), _FEED_CHUNK):
            parser.feed(bytes(view[start : start + _FEED_CHUNK]))
        message = parser.close()
    except RecursionError:
        # Enclosed messages nest without boundaries, so the scan above cannot see them.
        raise MessageRejected("MIME nesting exceeds what the parser can follow") from None
    except Exception as error:  # the parser is meant not to raise; anything that does is bad input
        raise MessageRejected(f"unparseable message: {type(error).__name__}") from error
    assert isinstance(message, EmailMessage)
    return message


def _check_structure(message: Message, limits: ParseLimits, deadline: _Deadline) -> None:
    """Depth, part count and header fields per section, walked without recursion."""
    stack = [(message, 0)]
    parts = 0
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > limits.max_parts:
            raise MessageRejected(f"MIME parts exceed the limit of {limits.max_parts}")
        if depth > limits.max_depth:
            raise MessageRejected(f"MIME nesting exceeds the limit of {limits.max_depth} levels")
        if len(part) > limits.max_headers:
            raise MessageRejected(f"{len(part)} header fields exceed the limit of {limits.max_headers}")
        stack.extend((child, depth + 1) for child in _children(part))
        if parts % 100 == 0:
            deadline.check("MIME structure")


def _check_address_headers(headers: RawHeaders, limits: ParseLimits) -> None:
    """Count addresses by a raw scan before the header registry parses them (10,000 take it ~2 s)."""
    for name in ("From", "Sender", "Reply-To", "To", "Cc"):
        for value in headers.values(name):
            # Every addr-spec has an "@" and addresses are comma-separated: the larger count bounds the work.
            count = max(value.count("@"), value.count(",") + 1)
            if count > limits.max_addresses:
                limit = limits.max_addresses
                raise MessageRejected(f"{name} with {count} addresses exceeds the limit of {limit}")
            if len(value) > limits.max_header_chars:
                raise MessageRejected(f"{name} of {len(value)} characters exceeds {limits.max_header_chars}")


# --- headers ---------------------------------------------------------------------------------------------


def _raw_header(part: Message, name: str) -> str:
    """The first raw value of a header of ``part``, unfolded and stripped, without the header registry."""
    return first_value(part, name)


def _one_line(value: str) -> str:
    """One line of display text: whitespace runs become one space, control characters (NUL...) go."""
    return " ".join(_CONTROL.sub(" ", value).split())


# The characters _is_control accepts (C0, DEL and C1), for whole strings.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _is_control(character: str) -> bool:
    return character < " " or "\x7f" <= character <= "\x9f"


def _without_nul(value: str) -> str:
    """Text without NUL, which PostgreSQL refuses in text and no mail client shows (UTF-16 read as 8-bit)."""
    return value.replace("\x00", "") if "\x00" in value else value


def _message_ids(value: str) -> list[str]:
    # RFC 6532 §3.2 allows UTF-8 in ids; the parser hands raw 8-bit bytes over surrogate-escaped.
    return _MSG_ID.findall(_unescape(value))[:100]


def _first_message_id(value: str) -> str | None:
    value = _unescape(value)
    ids = _message_ids(value)
    if ids:
        return ids[0]
    value = value.strip()
    return value[:900] if value and not any(c.isspace() or _is_control(c) for c in value) else None


def is_plausible_address(address: str) -> bool:
    """A syntactic check of an addr-spec: one @, both sides non-empty, no spaces or control characters."""
    if not address or len(address) > MAX_ADDRESS_LENGTH or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if not local or not domain or "." not in domain.strip(".") and domain != "localhost":
        return False
    return not any(c.isspace() or _is_control(c) or c in _NOT_IN_ADDRESS or _is_surrogate(c) for c in address)


def _sender(headers: RawHeaders, defects: list[str]) -> tuple[str, str]:
    for name in ("From", "Sender", "Reply-To"):
        raw_value = headers.first(name)
        if len(raw_value) > MAX_SENDER_CHARS:
            defects.append(f"{name}: longer than {MAX_SENDER_CHARS} characters")
            continue
        try:
            header = headers.parsed(name)
            addresses = getattr(header, "addresses", ()) if header is not None else ()
        except Exception as error:  # noqa: BLE001 - malformed input raises assorted errors
            defects.append(f"{name}: {type(error).__name__}")
            continue
        # One author only. "alice@example.org)<bob@example.org>" (CVE-2023-27043) parses as alice with an
        # invalid-address defect, the second address silently dropped: refuse rather than guess the author.
        plausible = [a for a in addresses if is_plausible_address(_unescape(a.addr_spec))]
        dropped_address = raw_value.count("@") > len(addresses) and any(
            isinstance(defect, errors.InvalidHeaderDefect) for defect in header.defects
        )
        if len(addresses) == 1 and plausible and not dropped_address:
            author = plausible[0]
            display_name = _display_name(raw_value, _unescape(author.display_name))
            return _one_line(display_name)[:200], _unescape(author.addr_spec).lower()
        if addresses:
            defects.append(f"{name}: ambiguous or malformed address")
    return "", ""


def _display_name(raw_value: str, parsed: str) -> str:
    """The sender's name, decoded from the raw phrase when it holds encoded words.

    Python 3.11's header parser puts a space between adjacent encoded words of a display name ("Олій ник"),
    which RFC 2047 §6.2 says must not be displayed; decode_header_text joins them as the RFC asks.
    """
    if "=?" not in raw_value or "<" not in raw_value:
        return parsed
    phrase = " ".join(raw_value.split("<", 1)[0].split())
    if len(phrase) >= 2 and phrase[0] == phrase[-1] == '"':
        phrase = phrase[1:-1]
    return decode_header_text(phrase) or parsed


def _addresses(headers: RawHeaders, name: str, defects: list[str]) -> list[str]:
    try:
        header = headers.parsed(name)
        addresses = getattr(header, "addresses", ()) if header is not None else ()
    except Exception as error:  # noqa: BLE001 - malformed input raises assorted errors
        defects.append(f"{name}: {type(error).__name__}")
        return []
    specs = [_unescape(a.addr_spec) for a in addresses]
    return [spec.lower() for spec in specs if is_plausible_address(spec)][:1000]


def _date(headers: RawHeaders, defects: list[str]) -> datetime | None:
    if len(headers.first("Date")) > MAX_LINE_OCTETS:
        defects.append("Date: too long")
        return None
    try:
        value = _header_datetime(headers.stored("Date"))
    except Exception as error:  # noqa: BLE001 - malformed input raises assorted errors
        defects.append(f"Date: {type(error).__name__}")
        return None
    if value is None or value.tzinfo is None:
        return None
    return value


_LINE_BREAK = re.compile(r"[\r\n]")


def _header_datetime(stored: str | None) -> datetime | None:
    """``Message.get("Date").datetime`` under email.policy.default, without building the header object.

    The policy removes CR and LF from the value; the registry's DateHeader reads it with
    ``parsedate_to_datetime`` (None for an empty value or a ValueError, other errors raise), then formats the
    date again and parses that for folding, which we never do: 65 µs a message, where this takes 5.
    """
    if stored is None:
        return None
    value = _LINE_BREAK.sub("", stored)
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except ValueError:
        return None


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_ENCODED_WORDS = re.compile(r"(?<=\?=)[ \t\r\n]+(?==\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)")


def decode_header_text(value: str) -> str:
    """Unstructured header text with RFC 2047 encoded words decoded, whatever their charset label says.

    Adjacent encoded words in one charset are joined before decoding, since encoders split multi-byte
    characters between them; raw 8-bit bytes (surrogate-escaped by the parser) are decoded like a body.
    """
    value = _unescape(value)
    value = _BETWEEN_ENCODED_WORDS.sub("", value)  # RFC 2047 §6.2: that whitespace is not displayed
    pieces: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        charset = match.group(1).split("*", 1)[0]  # RFC 2231 §5: charset*language
        if match.start() > position or (pending_charset and charset.lower() != pending_charset.lower()):
            if pending_charset is not None:
                pieces.append(decode_bytes(bytes(pending), pending_charset)[0])
            pending, pending_charset = bytearray(), None
            pieces.append(value[position : match.start()])
        pending += _decode_encoded_word(match.group(2), match.group(3))
        pending_charset = charset
        position = match.end()
    if pending_charset is not None:
        pieces.append(decode_bytes(bytes(pending), pending_charset)[0])
    pieces.append(value[position:])
    return "".join(pieces)


def _decode_encoded_word(encoding: str, text: str) -> bytes:
    if encoding in "bB":
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return text.encode("ascii", "replace")
    return binascii.a2b_qp(text.encode("ascii", "replace"), header=True)  # RFC 2047 §4.2: "_" is a space


# Decoded bodies are long: a Python loop over their characters cost more than the parse itself, and a regex
# search (5 to 10 ns a character) still costs more than encoding to UTF-8, which refuses exactly the surrogate
# code points (under 1 ns). Slices keep a long text from being copied whole.
_SURROGATE_CHECK_SLICE = 65_536


def _has_surrogates(value: str) -> bool:
    if value.isascii():  # a flag of the string, not a scan
        return False
    try:
        for start in range(0, len(value), _SURROGATE_CHECK_SLICE):
            value[start : start + _SURROGATE_CHECK_SLICE].encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _is_surrogate(character: str) -> bool:
    return "\ud800" <= character <= "\udfff"


def _unescape(value: str) -> str:
    """Header text from the registry with raw 8-bit bytes (surrogate-escaped by the parser) decoded."""
    if not _has_surrogates(value):
        return value
    try:
        raw = value.encode("utf-8", "surrogateescape")  # decoded text stays as it is, escaped bytes return
    except UnicodeEncodeError:  # a surrogate the parser did not make
        raw = value.encode("utf-8", "replace")
    return decode_bytes(raw, None)[0]


# --- charsets --------------------------------------------------------------------------------------------

# Labels seen in mail that Python does not know, or knows as something narrower than what senders mean.
_CHARSET_ALIASES: dict[str, str | None] = {
    "unknown-8bit": None, "x-unknown": None, "unknown": None, "x-user-defined": None, "default": None,
    "gb2312": "gb18030", "gbk": "gb18030", "ks_c_5601-1987": "cp949", "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874", "x-mac-roman": "mac-roman", "utf8": "utf-8", "cp-1250": "cp1250",
}
# Python codecs that are no charset of any mail: they decode labels, escapes or nothing at all, raise plain
# UnicodeError, and punycode takes quadratic time.
_NOT_CHARSETS = frozenset({"punycode", "idna", "undefined", "unicode-escape", "raw-unicode-escape"})
# RFC 2978 §2.3 charset names: printable ASCII without specials (and no NUL, which codecs.lookup refuses).
_CHARSET_LABEL = re.compile(r"^[a-z0-9!#$%&'+^_`{}~.:()-]{1,40}$")
_LEGACY_CANDIDATES = ("windows-1250", "iso-8859-2", "koi8-u", "windows-1251", "cp1252")
# Letters that text in each language uses beyond ASCII; the best decoding makes most of them.
_LANGUAGE_LETTERS = (
    frozenset("áčďéěíňóřšťúůýž"),  # Czech
    frozenset("áäčďéíĺľňóôŕšťúýž"),  # Slovak
    frozenset("ąćęłńóśźż"),  # Polish
    frozenset("абвгґдеєжзиіїйклмнопрстуфхцчшщьюя"),  # Ukrainian
    frozenset("абвгдеёжзийклмнопрстуфхцчшщъыьэюя"),  # Russian
    frozenset("äöüßéàèçâêîôûëïœ"),  # German and French, for cp1252
)


def decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """Text from bytes: the declared charset, then UTF-8, then the likeliest legacy code page.

    Returns the text and a note for the defects list when the declared charset was not used as declared.
    """
    codec = _codec(declared)
    problem = f"LookupError: unknown charset {declared!r}" if declared and codec is None else None
    if codec is not None:
        try:
            text = data.decode(codec)
        except UnicodeError:  # UnicodeDecodeError, and the plain UnicodeError some codecs raise
            problem = f"UnicodeDecodeError: not {declared!r}"
        else:
            if _has_surrogates(text):
                # UTF-16 and UTF-7 decode unpaired surrogates, which no database, encoder or browser takes.
                return _LONE_SURROGATE.sub("\ufffd", text), f"lone surrogates in {declared!r} replaced"
            if not (codec.startswith("iso8859") and _has_c1_controls(text)):
                return text, None
            # Latin-1-labelled text with C1 controls is windows-125x (WHATWG treats the label that way).
            problem = f"mislabelled as {declared!r}"
    prefix = f"{problem}, " if problem else ""
    if data.isascii():
        return data.decode("ascii"), f"{prefix}decoded as us-ascii" if problem else None
    try:
        return data.decode("utf-8"), f"{prefix}decoded as utf-8"
    except UnicodeDecodeError:
        pass
    if _mostly_utf8(data):
        return data.decode("utf-8", "replace"), f"{prefix}decoded as utf-8 with replacement characters"
    charset = guess_legacy_charset(data)
    return data.decode(charset, "replace"), f"{prefix}decoded as {charset} (guessed)"


def _codec(declared: str | None) -> str | None:
    """The Python codec for a charset label, or None when unknown or not a text encoding (e.g. "base64")."""
    if not declared:
        return None
    label = declared.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    if label is None or not _CHARSET_LABEL.match(label):
        return None
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if info.name in _NOT_CHARSETS or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_C1_CONTROL = re.compile("[\x80-\x9f]")


def _has_c1_controls(text: str) -> bool:
    return _C1_CONTROL.search(text) is not None


def _mostly_utf8(data: bytes) -> bool:
    """UTF-8 with a few broken bytes (a truncated sequence), as opposed to a legacy 8-bit charset."""
    sample = data[:CHARSET_SAMPLE].decode("utf-8", "replace")
    broken = sample.count("\ufffd")
    good = sum(1 for c in sample if ord(c) > 127) - broken
    return good > 0 and good >= 2 * broken


def guess_legacy_charset(data: bytes) -> str:
    """The 8-bit code page in which ``data`` reads most like Czech, Slovak, Polish, Ukrainian or Russian."""
    sample = data[:CHARSET_SAMPLE]
    best, best_score = "cp1252", None
    for charset in _LEGACY_CANDIDATES:
        try:
            text = sample.decode(charset)
        except UnicodeDecodeError:
            continue
        score = _plausibility(text)
        if best_score is None or score > best_score:
            best, best_score = charset, score
    return best


def _plausibility(text: str) -> int:
    """Higher when the non-ASCII characters are letters of one language, in lower case within words."""
    non_ascii = [c for c in text if ord(c) > 127]
    language = max(sum(c.lower() in letters for c in non_ascii) for letters in _LANGUAGE_LETTERS)
    penalty = 0
    previous = " "
    for c in text:
        if ord(c) > 127:
            category = unicodedata.category(c)
            if category[0] == "C":
                penalty += 5  # C1 controls and unassigned code points: the wrong code page
            elif category[0] == "S":
                penalty += 2  # symbols such as ® or box drawing amid text
            elif c.isupper() and previous.islower():
                penalty += 2  # "пРИВЕТ": cp1251 read as KOI8 flips the case
        previous = c
    return language - penalty


# --- body and attachments --------------------------------------------------------------------------------


@dataclass
class _Segment:
    """One displayable piece of the body: plain text, sanitised HTML, or both (alternatives)."""

    text: str | None = None
    html: str | None = None


@dataclass
class _Content:
    segments: list[_Segment] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)


def _collect(
    part: Message, content: _Content, defects: list[str], deadline: _Deadline, *, resource: bool = False
) -> None:
    """Add ``part`` to the body or the attachments. The depth was bounded by _check_structure."""
    deadline.check("body")
    content_type = _content_type(part, defects)
    maintype, subtype = content_type.split("/", 1)
    if maintype == "multipart":
        if not part.is_multipart():
            # Declared multipart, but no boundary was found: keep what is there as text rather than lose it.
            text = _decode_text(part, defects)
            if text.strip():
                content.segments.append(_Segment(text=text))
            return
        children = _children(part)
        if subtype == "alternative":
            _collect_alternative(children, content, defects, deadline)
        elif subtype == "related":
            _collect_related(part, children, content, defects, deadline)
        else:  # mixed, signed, report, digest and unknown subtypes (RFC 2046 §5.1.7): in order
            for child in children:
                _collect(child, content, defects, deadline)
        return
    if not resource and _is_body_text(part, content_type, defects):
        text = _decode_text(part, defects)
        segment = _Segment(html=sanitize_html(text)) if subtype == "html" else _Segment(text=text)
        content.segments.append(segment)
        return
    content.attachments.append(_attachment(part, content_type, defects, resource=resource))


def _collect_alternative(
    children: list[Message], content: _Content, defects: list[str], deadline: _Deadline
) -> None:
    """Keep the plain-text and the HTML version of an alternative (RFC 2046 §5.1.4).

    HTML is taken from the last (richest) version that has it; plain text from the first, where clients put it
    (a later "text/plain" alternative is, in the wild, mislabelled HTML).
    """
    versions = []
    for child in children:
        version = _Content()
        _collect(child, version, defects, deadline)
        versions.append(version)
    text_version = next((v for v in versions if any(s.text is not None for s in v.segments)), None)
    html_version = next((v for v in reversed(versions) if any(s.html is not None for s in v.segments)), None)
    if text_version or html_version:
        content.segments.append(_Segment(text=_joined_text(text_version), html=_joined_html(html_version)))
    # Files of the versions shown, and of versions that are only files (text/calendar).
    for version in versions:
        if version is text_version or version is html_version or not version.segments:
            content.attachments.extend(version.attachments)


def _joined_text(version: _Content | None) -> str | None:
    if version is None:
        return None
    return "\n\n".join(segment.text for segment in version.segments if segment.text is not None)


def _joined_html(version: _Content | None) -> str | None:
    if version is None:
        return None
    return "\n".join(segment.html for segment in version.segments if segment.html is not None)


def _collect_related(
    part: Message, children: list[Message], content: _Content, defects: list[str], deadline: _Deadline
) -> None:
    """RFC 2387: the root (``start``, else the first part) is the body, the rest are resources it uses."""
    if not children:
        return
    start = _first_message_id(_param(part, "start") or "")
    ids = [_first_message_id(_raw_header(child, "Content-ID")) for child in children]
    root = children[ids.index(start)] if start and start in ids else children[0]
    for child in children:
        _collect(child, content, defects, deadline, resource=child is not root)


def _is_body_text(part: Message, content_type: str, defects: list[str]) -> bool:
    """Plain text or HTML meant to be read in place: not an attachment, not a named file."""
    if content_type not in ("text/plain", "text/html"):
        return False
    disposition = _disposition(part)
    return disposition != "attachment" and not (disposition is None and _filename(part, defects))


def _decode_text(part: Message, defects: list[str]) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception as error:  # noqa: BLE001 - a broken transfer encoding: nothing readable
        defects.append(f"body: {type(error).__name__}")
        data = b""
    if not isinstance(data, bytes):
        data = b""
    params = _params(part)
    charset = _param_value(params, "charset")
    if not charset and _content_type(part, defects) == "text/html":
        charset = _html_meta_charset(data)
    text, note = decode_bytes(data, charset)
    if note:
        defects.append(f"body: {note}")
    text = _without_nul(text.replace("\r\n", "\n").replace("\r", "\n"))
    if (_param_value(params, "format") or "").lower() == "flowed":
        text = unflow(text, delete_space=(_param_value(params, "delsp") or "").lower() == "yes")
    return text


_META_CHARSET = re.compile(rb"""(?i)<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""")


def _html_meta_charset(data: bytes) -> str | None:
    match = _META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii") if match else None


def unflow(text: str, *, delete_space: bool = False) -> str:
    """Undo RFC 3676 format=flowed: join soft-broken lines (ending in a space) of the same quote depth."""
    lines: list[str] = []
    paragraph: list | None = None  # [quote depth, text]
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        body = body.removeprefix(" ")  # §4.4 space-stuffing
        if paragraph is not None and paragraph[0] != depth:  # §4.5: a change of quote depth ends a paragraph
            lines.append(_quoted_line(*paragraph))
            paragraph = None
        soft = body.endswith(" ") and body != "-- "  # §4.3: the signature separator is never flowed
        piece = body[:-1] if soft and delete_space else body
        if paragraph is None:
            paragraph = [depth, piece]
        else:
            paragraph[1] += piece
        if not soft:
            lines.append(_quoted_line(*paragraph))
            paragraph = None
    if paragraph is not None:
        lines.append(_quoted_line(*paragraph))
    return "\n".join(lines)


def _quoted_line(depth: int, text: str) -> str:
    return f"{'>' * depth} {text}" if depth else text


def _render(segments: list[_Segment], deadline: _Deadline) -> tuple[str, str | None]:
    """The message's text and HTML from its segments; text is derived from HTML where there is no plain."""
    texts = [_segment_text(segment, deadline) for segment in segments]
    text = "\n\n".join(t.strip("\n") for t in texts if t.strip()).strip()
    if not any(s.html is not None for s in segments):
        return text, None
    html = "\n".join(s.html if s.html is not None else _text_as_html(s.text or "") for s in segments)
    return text, html


def _segment_text(segment: _Segment, deadline: _Deadline) -> str:
    if segment.text is not None:
        return segment.text
    return quotes.html_to_text(segment.html or "", checkpoint=lambda: deadline.check("HTML to text"))


def _children(part: Message) -> list[Message]:
    """The parts (or enclosed message) in ``part``; ``get_payload()`` on a leaf decodes it, and can raise."""
    if not part.is_multipart():
        return []
    return [child for child in part.get_payload() if isinstance(child, Message)]


def _text_as_html(text: str) -> str:
    return f"<pre>{html_module.escape(text)}</pre>"


def _attachment(part: Message, content_type: str, defects: list[str], *, resource: bool) -> ParsedAttachment:
    if content_type.startswith("message/"):
        data = _enclosed_bytes(part, defects)
    else:
        try:
            data = part.get_payload(decode=True)
        except Exception as error:  # noqa: BLE001 - malformed input raises assorted errors
            defects.append(f"attachment: {type(error).__name__}")
            data = None
        if not isinstance(data, bytes):
            data = b""
        else:
            # Nothing reads the encoded body again: dropped now, a large message does not hold its attachments
            # twice (encoded text and decoded bytes) until the parse ends.
            part.set_payload("")
    content_id = _first_message_id(_raw_header(part, "Content-ID"))
    if content_id is not None and len(content_id) > MAX_CONTENT_ID:
        defects.append(f"Content-ID longer than {MAX_CONTENT_ID} characters dropped")
        content_id = None  # a cut id would match nothing; the image shows as a file instead
    disposition = _disposition(part)
    return ParsedAttachment(
        filename=_filename(part, defects) or _default_filename(part, content_type),
        content_type=content_type,
        data=data,
        content_id=content_id,
        # RFC 2183 inline, or a resource of multipart/related that the HTML references by its Content-ID
        is_inline=disposition == "inline" or (disposition is None and resource and content_id is not None),
    )


# Content types that enclose a whole message, kept as an .eml attachment (RFC 2046 §5.2.1, RFC 6532 §3.7).
_ENCLOSED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})
# Regenerate enclosed messages with their header lines as received and CRLF line ends (RFC 5322 §2.1).
_ENCLOSED_POLICY = email.policy.default.clone(refold_source="none", linesep="\r\n")


def _enclosed_bytes(part: Message, defects: list[str]) -> bytes:
    """An enclosed message (message/rfc822, message/global, delivery-status blocks) as bytes of its own."""
    if part.is_multipart():
        return b"\r\n".join(_message_bytes(enclosed, defects) for enclosed in _children(part))
    try:
        data = part.get_payload(decode=True)
    except Exception as error:  # noqa: BLE001 - malformed input raises assorted errors
        defects.append(f"enclosed message: {type(error).__name__}")
        return b""
    return data if isinstance(data, bytes) else b""


def _message_bytes(message: Message, defects: list[str]) -> bytes:
    try:
        return message.as_bytes(policy=_ENCLOSED_POLICY)
    except Exception as error:  # noqa: BLE001 - the generator can trip over what the parser tolerated
        defects.append(f"enclosed message: {type(error).__name__}")
    try:
        return message.as_bytes(policy=email.policy.compat32)  # folds and encodes less
    except Exception:  # noqa: BLE001 - malformed input raises assorted errors
        return b""


def _default_filename(part: Message, content_type: str) -> str:
    if content_type in _ENCLOSED_MESSAGE_TYPES:
        enclosed = _children(part)
        subject = _raw_header(enclosed[0], "Subject")[:200] if enclosed else ""
        subject = _safe_filename(decode_header_text(subject))
        return f"{subject or 'message'}.eml"
    if content_type.startswith("message/"):  # delivery-status, disposition-notification, feedback-report
        return f"{content_type.split('/', 1)[1]}.txt"
    if content_type == "text/rfc822-headers":
        return "headers.txt"
    text = content_type.startswith("text/")
    extension = mimetypes.guess_extension(content_type) or (".txt" if text else "")
    return f"attachment{extension}"


_RAW_NAME_PARAM = r"""(?i)(?:^|;)\s*{name}\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]+)"""


def _filename(part: Message, defects: list[str]) -> str:
    """The file name (RFC 2183 filename, else Content-Type name), RFC 2231 and RFC 2047 decoded, made safe."""
    try:
        name = part.get_filename()
    except Exception as error:  # noqa: BLE001 - malformed input raises assorted errors
        defects.append(f"filename: {type(error).__name__}")
        name = None
    if name is None or "\ufffd" in name:
        # Names the stdlib cannot read: RFC 2047 outside quotes (Outlook), raw 8-bit bytes in a part header.
        raw_name = _raw_param(part, "Content-Disposition", "filename")
        name = raw_name or _raw_param(part, "Content-Type", "name") or name
    if name and "=?" in name:
        name = decode_header_text(name)
    name = _safe_filename(name or "")
    if name.lower().endswith(".eml") or _content_type(part, defects) not in _ENCLOSED_MESSAGE_TYPES:
        return name
    return f"{name}.eml" if name else ""


def _raw_param(part: Message, header: str, name: str) -> str | None:
    match = re.search(_RAW_NAME_PARAM.format(name=name), _raw_header(part, header))
    if not match:
        return None
    value = match.group(1)
    if value.startswith('"'):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return _unescape(value)


def _safe_filename(name: str) -> str:
    """A display and download name: no directories, no control characters, one line, 255 characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = _one_line(name)
    return "" if name in (".", "..") else name[:255]


def _content_type(part: Message, defects: list[str]) -> str:
    try:
        return part.get_content_type()
    except Exception as error:  # noqa: BLE001 - malformed header values raise from the header registry
        defects.append(f"Content-Type: {type(error).__name__}")
        return "application/octet-stream"


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:  # noqa: BLE001 - malformed input raises assorted errors
        return None


def _param(part: Message, name: str) -> str | None:
    return _param_value(_params(part), name)


def _params(part: Message) -> dict[str, object]:
    """The Content-Type parameters by lower-cased name, first of each, as ``get_param`` returns them.

    One ``get_params`` instead of a ``get_param`` per name: each parses all of the parameters again.
    Empty when they cannot be read (``get_param`` would raise the same error for every name).
    """
    try:
        params = part.get_params() or []
    except Exception:  # noqa: BLE001 - malformed input raises assorted errors
        return {}
    found: dict[str, object] = {}
    for key, value in params:
        found.setdefault(key.lower(), value)
    return found


def _param_value(params: dict[str, object], name: str) -> str | None:
    value = params.get(name.lower())
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        value = email.utils.collapse_rfc2231_value(value)
    return str(value) if value is not None else None


# --- HTML ------------------------------------------------------------------------------------------------

# Explicit allow-lists (nh3's defaults change between releases). No forms, frames, scripts, media or <meta>.
HTML_TAGS = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite", "code", "col",
    "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
    "wbr",
})
# Removed together with their content, which is code or chrome, never the message.
HTML_DROPPED_WITH_CONTENT = frozenset({
    "script", "style", "title", "noscript", "template", "iframe", "frame", "frameset", "noframes", "object",
    "embed", "applet", "svg", "math", "textarea", "select", "button",
})
_TABLE_CELL_ATTRIBUTES = {"width", "height", "colspan", "rowspan", "bgcolor", "nowrap"}
HTML_ATTRIBUTES = {
    "*": {"style", "dir", "lang", "title", "align", "valign"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "border"},
    "font": {"color", "face", "size"},
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor"},
    "td": _TABLE_CELL_ATTRIBUTES,
    "th": _TABLE_CELL_ATTRIBUTES,
    "tr": {"bgcolor"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "hr": {"width", "size", "noshade"},
}
# After remote images are blocked, their address waits here for the console to load on request.
_FINAL_HTML_ATTRIBUTES = {**HTML_ATTRIBUTES, "img": HTML_ATTRIBUTES["img"] | {"data-blocked-src"}}
HTML_URL_SCHEMES = frozenset({"http", "https", "mailto", "cid"})
# Layout and typography only: no position, display, visibility, opacity, background images or content.
HTML_STYLE_PROPERTIES = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "font-variant", "text-align", "text-decoration", "text-indent", "text-transform", "letter-spacing",
    "line-height", "white-space", "word-break", "word-wrap", "overflow-wrap", "vertical-align", "direction",
    "list-style-type", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left", "padding",
    "padding-top", "padding-right", "padding-bottom", "padding-left", "border", "border-top", "border-right",
    "border-bottom", "border-left", "border-color", "border-style", "border-width", "border-collapse",
    "border-spacing", "width", "height", "max-width", "min-width",
})
HTML_LINK_REL = "noopener noreferrer nofollow"

_LINK_URL = re.compile(r"(?i)^\s*(?:https?|mailto):")
_REMOTE_URL = re.compile(r"(?i)^\s*https?://")
_CID_URL = re.compile(r"(?i)^\s*cid:")
# Anything in a style that loads, executes or obfuscates drops the whole style attribute.
_STYLE_TRICK = re.compile(r"(?i)url\s*\(|expression\s*\(|@import|behaviou?r\s*:|-moz-binding|javascript:|\\")
# The same for a lower-cased ASCII value, where (?i) can only mean ASCII case: a quarter of the time, and style
# values, dozens in each HTML part and seen in both nh3 passes, are nearly always ASCII.
_STYLE_TRICK_LOWER_ASCII = re.compile(_STYLE_TRICK.pattern.removeprefix("(?i)"))
# nh3 serialises every attribute value in double quotes with '"' escaped, so these patterns are exact.
_IMG_TAG = re.compile(r'<img\b(?:\s+[^\s=>/"]+(?:="[^"]*")?)*\s*/?>')
_REMOTE_SRC = re.compile(r'(\s)src="(https?://[^"]*)"', re.IGNORECASE)
_CID_ATTRIBUTE = re.compile(r'(\s(?:src|href)=")cid:([^"]*)"', re.IGNORECASE)


def sanitize_html(html: str) -> str:
    """HTML safe to show agents: allow-listed tags, attributes, URL schemes and styles; remote images blocked.

    ``<img src="https://…">`` becomes ``<img data-blocked-src="https://…">`` (tracking pixels stay silent
    until an agent chooses to load images); ``cid:`` images stay for ``rewrite_cid_urls``. HTML nested deeper
    than ``MAX_HTML_DEPTH`` elements is shown as its text.
    """
    if html_nesting_exceeds(html, MAX_HTML_DEPTH):
        return _text_as_html(quotes.html_to_text(html))
    cleaned = nh3.clean(html, attribute_filter=_filter_attribute, attributes=HTML_ATTRIBUTES, **_NH3_COMMON)
    cleaned = _IMG_TAG.sub(lambda tag: _REMOTE_SRC.sub(r'\1data-blocked-src="\2"', tag.group(0)), cleaned)
    return nh3.clean(cleaned, attribute_filter=_filter_final_attribute, attributes=_FINAL_HTML_ATTRIBUTES,
                     **_NH3_COMMON)


# The HTML parser inside nh3 (html5ever) looks through the stack of open elements on most start tags, so its
# time grows with the square of the nesting depth: 20,000 nested <div> take seconds, 100,000 over a minute.
# Real mail nests a few dozen levels (Outlook tables in a long quoted thread, a few hundred at most).
MAX_HTML_DEPTH = 500
_HTML_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]{0,30})")
_START_TAG = re.compile(r"<[A-Za-z]")
# Elements that never stay open around their like: void ones (HTML §13.1.2) and those whose end tag is
# optional, closed by the next sibling of their kind (§13.1.2.4), which cannot build a deep stack.
_NOT_NESTING = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "image", "input", "keygen", "link", "meta", "param",
    "source", "track", "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "rb", "rt", "rp",
    "rtc", "tbody", "thead", "tfoot", "colgroup", "caption",
})


def html_nesting_exceeds(html: str, limit: int) -> bool:
    """Whether the elements of ``html`` nest deeper than ``limit``: a linear scan of its tags.

    It over-counts rather than under-counts (an end tag that is missing keeps its element open), and stops
    at ``limit``, so it is cheap on any input.
    """
    if html.count("<") <= limit or len(_START_TAG.findall(html)) <= limit:
        return False  # only start tags open elements, each at a "<" of its own: real mail stops here
    stack: list[str] = []
    open_count: dict[str, int] = {}
    for match in _HTML_TAG.finditer(html):
        name = match.group(2).lower()
        if name in _NOT_NESTING:
            continue
        if not match.group(1):
            stack.append(name)
            open_count[name] = open_count.get(name, 0) + 1
            if len(stack) > limit:
                return True
        elif open_count.get(name):
            while True:  # an end tag closes its element and whatever is still open inside it
                closed = stack.pop()
                open_count[closed] -= 1
                if closed == name:
                    break
    return False


_NH3_COMMON = {
    "tags": set(HTML_TAGS),
    "clean_content_tags": set(HTML_DROPPED_WITH_CONTENT),
    "url_schemes": set(HTML_URL_SCHEMES),
    "link_rel": HTML_LINK_REL,
    "strip_comments": True,
    "filter_style_properties": set(HTML_STYLE_PROPERTIES),
}


def _filter_attribute(element: str, attribute: str, value: str) -> str | None:
    """Per-value rules nh3's lists cannot express; None drops the attribute."""
    if attribute == "href":
        return value if _LINK_URL.match(value) else None  # relative links mean nothing in a mail
    if attribute == "src":
        return value if _CID_URL.match(value) or _REMOTE_URL.match(value) else None
    if attribute == "style":
        return None if _has_style_trick(value) else value
    return value


def _has_style_trick(value: str) -> bool:
    if value.isascii():
        return _STYLE_TRICK_LOWER_ASCII.search(value.lower()) is not None
    return _STYLE_TRICK.search(value) is not None


def _filter_final_attribute(element: str, attribute: str, value: str) -> str | None:
    if attribute == "src":
        return value if _CID_URL.match(value) else None
    if attribute == "data-blocked-src":
        return value if _REMOTE_URL.match(value) else None
    return _filter_attribute(element, attribute, value)


def rewrite_cid_urls(html: str, url_for: UrlFor) -> str:
    """Point ``cid:`` references (RFC 2392) of sanitised HTML at ``url_for(content_id)``; unknown ids stay."""
    lookup = url_for.get if isinstance(url_for, Mapping) else url_for

    def rewrite(match: re.Match) -> str:
        content_id = urllib.parse.unquote(html_module.unescape(match.group(2))).strip().strip("<>")
        url = lookup(content_id)
        if url is None:
            return match.group(0)
        return f'{match.group(1)}{html_module.escape(url, quote=True)}"'

    return _CID_ATTRIBUTE.sub(rewrite, html)
