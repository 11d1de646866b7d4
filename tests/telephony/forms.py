"""Twilio webhook form posts, modelled on the parameters Twilio documents for each request.

Voice request and status callbacks: https://www.twilio.com/docs/voice/twiml#request-parameters and
https://www.twilio.com/docs/voice/api/call-resource#statuscallback; ``<Dial action>``:
https://www.twilio.com/docs/voice/twiml/dial#action; ``<Record>`` action, recording status and transcription
callbacks: https://www.twilio.com/docs/voice/twiml/record.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

T0 = datetime(2024, 3, 5, 9, 0, 0, tzinfo=UTC)


def sid(prefix: str, name: str) -> str:
    """A well-formed Twilio id (prefix and 32 hex digits), the same for the same name."""
    return prefix + hashlib.md5(name.encode()).hexdigest()


ACCOUNT_SID = sid("AC", "account")
CALL_SID = sid("CA", "call")
ALICE_LEG = sid("CA", "leg-alice")
BOB_LEG = sid("CA", "leg-bob")
RECORDING_SID = sid("RE", "voicemail")
TRANSCRIPTION_SID = sid("TR", "voicemail")
RECORDING_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}"
CALLER = "+420601123456"
OUR_NUMBER = "+420222333444"
BOB_PHONE = "+420777888999"


def at(seconds: int) -> str:
    """``Timestamp`` as Twilio sends it (RFC 2822), ``seconds`` after T0."""
    return format_datetime(T0 + timedelta(seconds=seconds))


def inbound_call(call_sid: str = CALL_SID, **extra: str) -> dict[str, str]:
    """The parameters Twilio sends with every request about an inbound call to our Czech number."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "Called": OUR_NUMBER,
        "CalledCity": "",
        "CalledCountry": "CZ",
        "Caller": CALLER,
        "CallerCountry": "CZ",
        "Direction": "inbound",
        "From": CALLER,
        "FromCountry": "CZ",
        "To": OUR_NUMBER,
        "ToCountry": "CZ",
    }
    form.update(extra)
    return form


def voice_request(**extra: str) -> dict[str, str]:
    """``/twilio/voice``: the incoming call, before we answered it."""
    return inbound_call(**{"CallStatus": "ringing", "CallerName": "NOVAK JAN", **extra})


def call_status(status: str, sequence: int, seconds: int, **extra: str) -> dict[str, str]:
    """``/twilio/status``: a call progress event of the inbound call."""
    return inbound_call(
        CallStatus=status,
        SequenceNumber=str(sequence),
        Timestamp=at(seconds),
        CallbackSource="call-progress-events",
        **extra,
    )


def leg_status(
    leg_sid: str, to: str, status: str, sequence: int, seconds: int, **extra: str
) -> dict[str, str]:
    """``/twilio/status`` from a leg created by ``<Dial>`` (``<Client statusCallback>``/``<Number ...>``)."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": leg_sid,
        "ParentCallSid": CALL_SID,
        "CallStatus": status,
        "Direction": "outbound-dial",
        "From": CALLER,
        "To": to,
        "SequenceNumber": str(sequence),
        "Timestamp": at(seconds),
        "CallbackSource": "call-progress-events",
    }
    form.update(extra)
    return form


def dial_result(
    dial_status: str, *, leg_sid: str | None, duration: int, parent_status: str
) -> dict[str, str]:
    """``/twilio/dial-result``: Twilio's ``<Dial action>`` request once the dialled legs ended."""
    form = inbound_call(
        CallStatus=parent_status,
        DialCallStatus=dial_status,
        DialCallDuration=str(duration),
        DialBridged="false",
    )
    if leg_sid is not None:
        form["DialCallSid"] = leg_sid
    return form


def record_action(duration: int, *, parent_status: str = "in-progress") -> dict[str, str]:
    """``/twilio/recording`` as ``<Record action>``: URL and length only, no RecordingSid or status."""
    return inbound_call(
        CallStatus=parent_status, RecordingUrl=RECORDING_URL, RecordingDuration=str(duration), Digits="hangup"
    )


def recording_status(status: str, duration: int | None = None) -> dict[str, str]:
    """``/twilio/recording`` as ``recordingStatusCallback``: no From/To/CallStatus, the recording's own data."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": CALL_SID,
        "RecordingSid": RECORDING_SID,
        "RecordingUrl": RECORDING_URL,
        "RecordingStatus": status,
        "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
        "RecordingStartTime": at(40),
    }
    if duration is not None:
        form["RecordingDuration"] = str(duration)
    return form


def transcription(text: str, status: str = "completed") -> dict[str, str]:
    """``/twilio/transcription``: ``<Record transcribeCallback>``."""
    return inbound_call(
        CallStatus="completed",
        TranscriptionSid=TRANSCRIPTION_SID,
        TranscriptionText=text,
        TranscriptionStatus=status,
        TranscriptionType="fast",
        TranscriptionUrl=f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Transcriptions/{TRANSCRIPTION_SID}",
        RecordingSid=RECORDING_SID,
        RecordingUrl=RECORDING_URL,
        url="https://help.example.com/twilio/transcription",
    )


def callback_call_status(status: str, sequence: int, seconds: int, **extra: str) -> dict[str, str]:
    """``/twilio/status`` of a call we placed (a call-back to the customer): Direction ``outbound-api``."""
    form = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": CALL_SID,
        "CallStatus": status,
        "Direction": "outbound-api",
        "From": OUR_NUMBER,
        "To": CALLER,
        "SequenceNumber": str(sequence),
        "Timestamp": at(seconds),
        "CallbackSource": "call-progress-events",
    }
    form.update(extra)
    return form


# --- the canonical event sequences of whole calls, as (kind, form) in the order Twilio sends them --------------

ANSWERED = [
    ("voice", voice_request()),
    ("status", call_status("in-progress", 1, 2)),
    ("status", leg_status(ALICE_LEG, "client:alice", "initiated", 0, 8)),
    ("status", leg_status(BOB_LEG, BOB_PHONE, "initiated", 0, 8)),
    ("status", leg_status(ALICE_LEG, "client:alice", "ringing", 1, 8)),
    ("status", leg_status(BOB_LEG, BOB_PHONE, "ringing", 1, 9)),
    ("status", leg_status(ALICE_LEG, "client:alice", "in-progress", 2, 20)),
    ("status", leg_status(BOB_LEG, BOB_PHONE, "canceled", 2, 20)),
    ("status", leg_status(ALICE_LEG, "client:alice", "completed", 3, 140, CallDuration="120")),
    ("dial-result", dial_result("completed", leg_sid=ALICE_LEG, duration=120, parent_status="in-progress")),
    ("status", call_status("completed", 2, 141, CallDuration="141")),
]

MISSED = [
    ("voice", voice_request()),
    ("status", call_status("in-progress", 1, 1)),
    ("status", leg_status(ALICE_LEG, "client:alice", "initiated", 0, 6)),
    ("status", leg_status(ALICE_LEG, "client:alice", "ringing", 1, 6)),
    ("status", leg_status(ALICE_LEG, "client:alice", "canceled", 2, 31)),
    ("dial-result", dial_result("canceled", leg_sid=ALICE_LEG, duration=0, parent_status="completed")),
    ("status", call_status("completed", 2, 31, CallDuration="30")),
]

VOICEMAIL = [
    ("voice", voice_request()),
    ("status", call_status("in-progress", 1, 1)),
    ("dial-result", dial_result("no-answer", leg_sid=ALICE_LEG, duration=0, parent_status="in-progress")),
    ("recording", recording_status("in-progress")),
    ("recording", record_action(24, parent_status="completed")),
    ("status", call_status("completed", 2, 66, CallDuration="65")),
    ("recording", recording_status("completed", 24)),
    ("transcription", transcription("Hi, this is Jan Novak, please call me back about my order.")),
]

BUSY = [
    ("status", callback_call_status("initiated", 0, 0)),
    ("status", callback_call_status("busy", 1, 3, CallDuration="0")),
]

FAILED = [
    ("status", callback_call_status("initiated", 0, 0)),
    ("status", callback_call_status("failed", 1, 1, CallDuration="0", SipResponseCode="404")),
]

SCENARIOS = {"answered": ANSWERED, "missed": MISSED, "voicemail": VOICEMAIL, "busy": BUSY, "failed": FAILED}
