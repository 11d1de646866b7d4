"""Twilio voice webhook forms parsed into validated ``CallEvent`` values.

One parser for the five webhooks we receive. Parameter names and values follow Twilio's documentation:
the voice request and status callbacks (https://www.twilio.com/docs/voice/twiml#request-parameters,
https://www.twilio.com/docs/voice/api/call-resource#statuscallback), the ``<Dial action>`` request
(https://www.twilio.com/docs/voice/twiml/dial#action), ``<Record>``'s action and recording status callback
(https://www.twilio.com/docs/voice/twiml/record) and its transcription callback. A form that does not fit raises
``InvalidInputError``: the raw event is kept by the caller and quarantined, never silently half-read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import urlsplit

import phonenumbers

from centrala.core.errors import ConfigurationError, InvalidInputError


class CallEventKind(StrEnum):
    """Which webhook delivered the event; also the last segment of its route (``/twilio/<kind>``)."""

    VOICE = "voice"
    STATUS = "status"
    DIAL_RESULT = "dial-result"
    RECORDING = "recording"
    TRANSCRIPTION = "transcription"


class CallStatus(StrEnum):
    """Twilio's ``CallStatus`` values."""

    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Whether the call has ended; Twilio sends no further progress for it."""
        return self in _TERMINAL_STATUSES


_TERMINAL_STATUSES = frozenset(
    {CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.CANCELED, CallStatus.FAILED}
)


class CallDirection(StrEnum):
    """Twilio's ``Direction``: a call to us, one we placed through the API, or a leg created by ``<Dial>``."""

    INBOUND = "inbound"
    OUTBOUND_API = "outbound-api"
    OUTBOUND_DIAL = "outbound-dial"


class DialCallStatus(StrEnum):
    """``DialCallStatus`` of the ``<Dial action>`` request: how the dialled leg ended.

    ``completed`` means the dialled party answered and was connected (``answered`` is its conference
    spelling); ``in-progress`` is accepted for a leg reported while still connected.
    """

    COMPLETED = "completed"
    ANSWERED = "answered"
    IN_PROGRESS = "in-progress"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def connected(self) -> bool:
        """Whether the dialled party picked up."""
        return self in (DialCallStatus.COMPLETED, DialCallStatus.ANSWERED, DialCallStatus.IN_PROGRESS)


class RecordingStatus(StrEnum):
    """``RecordingStatus`` of a recording status callback; ``absent`` means nothing (but silence) was recorded."""

    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    ABSENT = "absent"
    FAILED = "failed"


class TranscriptionStatus(StrEnum):
    """``TranscriptionStatus`` of a ``<Record transcribe>`` callback."""

    COMPLETED = "completed"
    FAILED = "failed"


_E = TypeVar("_E", bound=StrEnum)

# Twilio resource ids: a two-letter prefix and 32 hex digits.
_SID_PATTERNS = {prefix: re.compile(prefix + r"[0-9a-fA-F]{32}") for prefix in ("AC", "CA", "RE", "TR")}
_DIGITS = re.compile(r"[0-9*#]{0,64}")
_MAX_TEXT = 10_000
_MAX_QUEUE = 100

# What carriers put in place of a withheld caller id. Twilio passes some as words and others as the "numbers"
# that spell them on a phone keypad: +266696687 ANONYMOUS, +7378742833 RESTRICTED, +2562533 BLOCKED,
# +8656696 UNKNOWN, +86282452253 UNAVAILABLE. Several are possible (even valid) numbers elsewhere in the
# world, so they are recognised before parsing and never matched to a contact.
WITHHELD_CALLER_WORDS = frozenset(
    {"anonymous", "restricted", "private", "blocked", "unknown", "unavailable", "withheld", "private number"}
)
WITHHELD_CALLER_NUMBERS = frozenset({"+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253"})


@dataclass(frozen=True)
class CallEvent:
    """One Twilio webhook request, validated; ``form`` keeps every parameter exactly as received.

    ``from_number``/``to_number`` are E.164 or None; the raw value is always in ``from_raw``/``to_raw`` and a
    browser client (``client:alice``) is in ``from_client``/``to_client``. ``queue`` is not a Twilio parameter:
    the route passes it when it knows (e.g. from the query of a ``<Dial action>`` URL we built).
    """

    kind: CallEventKind
    call_sid: str
    account_sid: str
    parent_call_sid: str | None = None
    call_status: CallStatus | None = None
    direction: CallDirection | None = None
    from_number: str | None = None
    from_raw: str | None = None
    from_client: str | None = None
    from_withheld: bool = False
    to_number: str | None = None
    to_raw: str | None = None
    to_client: str | None = None
    caller_name: str | None = None
    forwarded_from: str | None = None
    sequence_number: int | None = None
    timestamp: datetime | None = None
    call_duration: int | None = None
    digits: str | None = None
    dial_call_status: DialCallStatus | None = None
    dial_call_duration: int | None = None
    dial_call_sid: str | None = None
    recording_sid: str | None = None
    recording_url: str | None = None
    recording_duration: int | None = None
    recording_status: RecordingStatus | None = None
    transcription_sid: str | None = None
    transcription_text: str | None = None
    transcription_status: TranscriptionStatus | None = None
    queue: str | None = None
    form: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)

    @property
    def is_dialed_leg(self) -> bool:
        """Whether this event reports a leg created by ``<Dial>`` (an agent's phone or browser) of a parent call."""
        return self.direction is CallDirection.OUTBOUND_DIAL and self.parent_call_sid is not None

    @property
    def recording_key(self) -> str | None:
        """The recording this event reports on: ``RecordingSid``, else the sid ending ``RecordingUrl``."""
        return recording_key(self.recording_sid, self.recording_url)


def parse_call_event(
    kind: str, form: Mapping[str, str], *, default_region: str, queue: str | None = None
) -> CallEvent:
    """The ``CallEvent`` in a Twilio webhook form; numbers not in E.164 are read in ``default_region``.

    Raises:
        InvalidInputError: unknown kind, a required parameter missing, or a value Twilio never sends.
        ConfigurationError: ``default_region`` is not a region code phonenumbers knows (``CZ``, ``US`` ...).
    """
    region = _check_region(default_region)
    try:
        event_kind = CallEventKind(kind)
    except ValueError:
        raise InvalidInputError(f"unknown Twilio webhook kind {kind!r}") from None
    values = {str(name): str(value) for name, value in form.items()}
    get = _FormReader(values, event_kind)

    call_status = get.enum("CallStatus", CallStatus)
    if event_kind in (CallEventKind.VOICE, CallEventKind.STATUS) and call_status is None:
        raise InvalidInputError(f"the {event_kind} webhook has no CallStatus")

    from_raw = get.text("From")
    to_raw = get.text("To")
    from_number, from_client, from_withheld = _read_party(from_raw, region)
    to_number, to_client, _ = _read_party(to_raw, region)

    event = CallEvent(
        kind=event_kind,
        call_sid=get.sid("CallSid", "CA", required=True),
        account_sid=get.sid("AccountSid", "AC", required=True),
        parent_call_sid=get.sid("ParentCallSid", "CA"),
        call_status=call_status,
        direction=get.enum("Direction", CallDirection),
        from_number=from_number,
        from_raw=from_raw,
        from_client=from_client,
        from_withheld=from_withheld,
        to_number=to_number,
        to_raw=to_raw,
        to_client=to_client,
        caller_name=get.text("CallerName"),
        forwarded_from=get.text("ForwardedFrom"),
        sequence_number=get.count("SequenceNumber"),
        timestamp=get.timestamp("Timestamp"),
        call_duration=get.count("CallDuration"),
        digits=get.digits("Digits"),
        dial_call_status=get.enum("DialCallStatus", DialCallStatus),
        dial_call_duration=get.count("DialCallDuration"),
        dial_call_sid=get.sid("DialCallSid", "CA"),
        recording_sid=get.sid("RecordingSid", "RE"),
        recording_url=get.url("RecordingUrl"),
        recording_duration=get.count("RecordingDuration"),
        recording_status=get.enum("RecordingStatus", RecordingStatus),
        transcription_sid=get.sid("TranscriptionSid", "TR"),
        transcription_text=get.text("TranscriptionText"),
        transcription_status=get.enum("TranscriptionStatus", TranscriptionStatus),
        queue=_check_queue(queue),
        form=MappingProxyType(values),
    )
    _check_kind_requirements(event)
    return event


def event_key(event: CallEvent) -> str:
    """The natural idempotency key of a webhook delivery: the same key for Twilio's retries and duplicates.

    ``<CallSid>:<kind>:<discriminator>`` where the discriminator is ``SequenceNumber`` and ``CallStatus`` for
    status callbacks (the sequence alone when a status is missing), ``CallStatus`` and ``Digits`` for voice
    requests (each IVR step is its own request), ``DialCallSid`` (else ``DialCallStatus``) for dial results,
    recording id and ``RecordingStatus`` for recordings (``in-progress`` and ``completed`` are two callbacks),
    ``TranscriptionSid`` for transcriptions. Only ``[A-Za-z0-9:._*#+-]`` appear; a longer key is hashed.
    """
    if event.kind is CallEventKind.STATUS:
        parts = [_seq_text(event.sequence_number), _opt(event.call_status)]
    elif event.kind is CallEventKind.VOICE:
        parts = [_opt(event.call_status), "d" + (event.digits or "")]
    elif event.kind is CallEventKind.DIAL_RESULT:
        parts = [event.dial_call_sid or _opt(event.dial_call_status)]
    elif event.kind is CallEventKind.RECORDING:
        parts = [event.recording_key or "-", _opt(event.recording_status)]
    else:
        parts = [event.transcription_sid or event.recording_key or "-", _opt(event.transcription_status)]
    key = ":".join([event.call_sid, str(event.kind), *parts])
    if len(key) > 200 or not re.fullmatch(r"[A-Za-z0-9:._*#+-]+", key):
        return f"{event.call_sid}:{event.kind}:h{hashlib.sha256(key.encode()).hexdigest()[:40]}"
    return key


def call_key(event: CallEvent) -> str:
    """The CallSid of the call this event belongs to: the parent's for a leg created by ``<Dial>``."""
    if event.is_dialed_leg and event.parent_call_sid is not None:
        return event.parent_call_sid
    return event.call_sid


def parse_phone_number(raw: str | None, default_region: str) -> str | None:
    """``raw`` in E.164 when it is a valid phone number (a national form read in ``default_region``), else None.

    None for a missing value, a browser client (``client:...``), a SIP URI, and a withheld caller id.
    """
    number, _, _ = _read_party(raw, _check_region(default_region))
    return number


def recording_key(recording_sid: str | None, recording_url: str | None) -> str | None:
    """A recording's id: its sid, or the ``RE...`` sid ending its URL (``<Record action>`` sends only the URL)."""
    if recording_sid:
        return recording_sid
    if not recording_url:
        return None
    last = urlsplit(recording_url).path.rstrip("/").rsplit("/", 1)[-1]
    last = last.rsplit(".", 1)[0] if "." in last else last
    if _SID_PATTERNS["RE"].fullmatch(last):
        return last
    return "url-" + hashlib.sha256(recording_url.encode()).hexdigest()[:32]


# --- helpers --------------------------------------------------------------------------------------------------


class _FormReader:
    """Typed, validated access to one form; every error names the parameter and the webhook kind."""

    def __init__(self, values: dict[str, str], kind: CallEventKind) -> None:
        self._values = values
        self._kind = kind

    def _fail(self, name: str, why: str) -> InvalidInputError:
        return InvalidInputError(f"Twilio {self._kind} webhook: {name} {why}")

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        value = value.strip()
        if not value:
            return None
        if len(value) > _MAX_TEXT:
            raise self._fail(name, f"is longer than {_MAX_TEXT} characters")
        if any(not char.isprintable() and char not in "\t\r\n" for char in value):
            raise self._fail(name, "contains control characters")
        return value

    def sid(self, name: str, prefix: str, *, required: bool = False) -> str | None:
        value = self.text(name)
        if value is None:
            if required:
                raise self._fail(name, "is missing")
            return None
        if not _SID_PATTERNS[prefix].fullmatch(value):
            raise self._fail(name, f"is not a Twilio id ({prefix} and 32 hex digits): {value[:40]!r}")
        return value

    def enum(self, name: str, enum: type[_E]) -> _E | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return enum(value.lower())
        except ValueError:
            raise self._fail(name, f"has an unknown value {value[:40]!r}") from None

    def count(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 9:
            raise self._fail(name, f"is not a whole number of at most 9 digits: {value[:40]!r}")
        return int(value)

    def digits(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        # <Record action> reports "hangup" when the caller hung up to end the message.
        if value != "hangup" and not _DIGITS.fullmatch(value):
            raise self._fail(name, "may contain only 0-9, * and # (or be 'hangup')")
        return value

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or any(c.isspace() for c in value):
            raise self._fail(name, "is not an absolute http(s) URL")
        return value

    def timestamp(self, name: str) -> datetime | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            moment = parsedate_to_datetime(value)  # RFC 2822, e.g. "Tue, 10 Jan 2023 17:47:25 +0000"
        except (TypeError, ValueError, IndexError):
            raise self._fail(name, f"is not an RFC 2822 date: {value[:40]!r}") from None
        # RFC 2822 §3.3: "-0000" means UTC with no local zone known; parsedate_to_datetime returns it naive.
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _check_kind_requirements(event: CallEvent) -> None:
    kind = event.kind
    if kind is CallEventKind.DIAL_RESULT and event.dial_call_status is None:
        raise InvalidInputError("Twilio dial-result webhook: DialCallStatus is missing")
    if kind is CallEventKind.RECORDING and event.recording_key is None:
        raise InvalidInputError("Twilio recording webhook: neither RecordingSid nor RecordingUrl is present")
    if kind is CallEventKind.TRANSCRIPTION:
        if event.transcription_sid is None:
            raise InvalidInputError("Twilio transcription webhook: TranscriptionSid is missing")
        if event.transcription_status is None:
            raise InvalidInputError("Twilio transcription webhook: TranscriptionStatus is missing")


def _read_party(raw: str | None, region: str) -> tuple[str | None, str | None, bool]:
    """(E.164 number or None, client identity or None, withheld?) of a From/To value."""
    if raw is None:
        return None, None, False
    lowered = raw.strip().lower()
    if lowered.startswith("client:"):
        identity = raw.strip()[len("client:") :]
        return None, identity or None, False
    if lowered.startswith(("sip:", "sips:")):
        return None, None, False
    if lowered in WITHHELD_CALLER_WORDS or raw.strip() in WITHHELD_CALLER_NUMBERS:
        return None, None, True
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None, None, False
    if not phonenumbers.is_valid_number(parsed):
        return None, None, False
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if e164 in WITHHELD_CALLER_NUMBERS:
        return None, None, True
    return e164, None, False


def _check_region(region: str) -> str:
    code = (region or "").strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigurationError(f"{region!r} is not a phone region code (ISO 3166-1 alpha-2, e.g. CZ)")
    return code


def _check_queue(queue: str | None) -> str | None:
    if queue is None:
        return None
    value = queue.strip()
    if not value or len(value) > _MAX_QUEUE or any(not char.isprintable() for char in value):
        raise InvalidInputError(f"a queue name is 1-{_MAX_QUEUE} printable characters")
    return value


def _seq_text(sequence_number: int | None) -> str:
    return "-" if sequence_number is None else str(sequence_number)


def _opt(value: StrEnum | None) -> str:
    return "-" if value is None else str(value)
