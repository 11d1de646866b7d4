"""Twilio webhook forms become validated CallEvents: E.164 numbers in the number's region, aware times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from centrala.core.errors import ConfigurationError, InvalidInputError
from centrala.telephony.events import (
    CallDirection,
    CallEventKind,
    CallStatus,
    DialCallStatus,
    RecordingStatus,
    TranscriptionStatus,
    call_key,
    event_key,
    parse_call_event,
    parse_phone_number,
)
from tests.telephony import forms
from tests.telephony.forms import (
    ACCOUNT_SID,
    ALICE_LEG,
    CALL_SID,
    RECORDING_SID,
    RECORDING_URL,
    T0,
    TRANSCRIPTION_SID,
)


def parse(kind: str, form: dict[str, str], region: str = "CZ"):
    return parse_call_event(kind, form, default_region=region)


# --- the five webhooks --------------------------------------------------------------------------------------------


def test_voice_request_gives_the_caller_in_e164_and_no_timestamp():
    event = parse("voice", forms.voice_request())
    assert event.kind is CallEventKind.VOICE
    assert event.call_sid == CALL_SID
    assert event.account_sid == ACCOUNT_SID
    assert event.call_status is CallStatus.RINGING
    assert event.direction is CallDirection.INBOUND
    assert (event.from_number, event.to_number) == ("+420601123456", "+420222333444")
    assert event.caller_name == "NOVAK JAN"
    assert event.timestamp is None and event.sequence_number is None
    assert event.form["FromCountry"] == "CZ"


def test_status_callback_gives_sequence_aware_timestamp_and_duration():
    event = parse("status", forms.call_status("completed", 2, 141, CallDuration="141"))
    assert event.call_status is CallStatus.COMPLETED and event.call_status.is_terminal
    assert event.sequence_number == 2
    assert event.timestamp == T0 + timedelta(seconds=141)
    assert event.timestamp.tzinfo is not None
    assert event.call_duration == 141


def test_timestamp_keeps_its_offset_and_minus_zero_is_utc():
    with_offset = parse(
        "status", {**forms.call_status("ringing", 0, 0), "Timestamp": "Tue, 05 Mar 2024 10:00:00 +0100"}
    )
    assert with_offset.timestamp == T0
    assert with_offset.timestamp.utcoffset() == timedelta(hours=1)
    unknown_zone = parse(
        "status", {**forms.call_status("ringing", 0, 0), "Timestamp": "Tue, 05 Mar 2024 09:00:00 -0000"}
    )
    assert unknown_zone.timestamp == datetime(2024, 3, 5, 9, 0, tzinfo=UTC)


def test_dial_result_gives_the_dialled_leg():
    event = parse(
        "dial-result",
        forms.dial_result("completed", leg_sid=ALICE_LEG, duration=120, parent_status="in-progress"),
    )
    assert event.dial_call_status is DialCallStatus.COMPLETED and event.dial_call_status.connected
    assert event.dial_call_sid == ALICE_LEG
    assert event.dial_call_duration == 120
    assert event.call_status is CallStatus.IN_PROGRESS


def test_leg_status_belongs_to_the_parent_call_and_names_the_client():
    event = parse("status", forms.leg_status(ALICE_LEG, "client:alice", "in-progress", 2, 20))
    assert event.direction is CallDirection.OUTBOUND_DIAL and event.is_dialed_leg
    assert event.call_sid == ALICE_LEG and event.parent_call_sid == CALL_SID
    assert call_key(event) == CALL_SID
    assert (event.to_client, event.to_number, event.to_raw) == ("alice", None, "client:alice")


def test_recording_status_callback_without_call_status_or_numbers():
    event = parse("recording", forms.recording_status("completed", 24))
    assert event.call_status is None and event.direction is None and event.from_raw is None
    assert event.recording_status is RecordingStatus.COMPLETED
    assert (event.recording_sid, event.recording_url, event.recording_duration) == (
        RECORDING_SID,
        RECORDING_URL,
        24,
    )
    assert event.recording_key == RECORDING_SID


def test_record_action_without_sid_is_keyed_by_the_sid_in_its_url():
    event = parse("recording", forms.record_action(24))
    assert event.recording_sid is None
    assert event.recording_key == RECORDING_SID
    assert event.digits == "hangup"


def test_transcription_callback():
    event = parse("transcription", forms.transcription("Call me back, please."))
    assert event.transcription_sid == TRANSCRIPTION_SID
    assert event.transcription_status is TranscriptionStatus.COMPLETED
    assert event.transcription_text == "Call me back, please."
    assert event.recording_key == RECORDING_SID


def test_queue_given_by_the_route_is_kept():
    event = parse_call_event("voice", forms.voice_request(Digits="2"), default_region="CZ", queue="billing")
    assert event.queue == "billing" and event.digits == "2"


# --- numbers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("601 123 456", "CZ", "+420601123456"),
        ("+420 601 123 456", "US", "+420601123456"),
        ("512 345 678", "PL", "+48512345678"),
        ("050 123 4567", "UA", "+380501234567"),
        ("(201) 555-0123", "US", "+12015550123"),
        ("00420601123456", "CZ", "+420601123456"),
    ],
)
def test_national_numbers_are_read_in_the_default_region(raw, region, expected):
    event = parse("voice", forms.voice_request(From=raw), region=region)
    assert event.from_number == expected
    assert event.from_raw == raw
    assert parse_phone_number(raw, region) == expected


def test_the_same_national_digits_mean_different_numbers_in_different_regions():
    assert parse_phone_number("601 123 456", "CZ") == "+420601123456"
    assert parse_phone_number("601 123 456", "PL") == "+48601123456"


@pytest.mark.parametrize(
    "raw",
    [
        "anonymous",
        "Anonymous",
        "+266696687",
        "Restricted",
        "+7378742833",
        "+2562533",
        "+8656696",
        "+86282452253",
        "unknown",
        "Private",
    ],
)
def test_withheld_caller_ids_have_no_number_and_keep_the_raw_value(raw):
    event = parse("voice", forms.voice_request(From=raw), region="US")
    assert event.from_number is None
    assert event.from_withheld is True
    assert event.from_raw == raw


@pytest.mark.parametrize("raw", ["12", "+999123", "not a number", "sip:alice@pbx.example.com"])
def test_unusable_numbers_have_no_number_and_are_not_withheld(raw):
    event = parse("voice", forms.voice_request(From=raw))
    assert (event.from_number, event.from_withheld, event.from_raw) == (None, False, raw)


def test_browser_client_caller_is_an_identity_not_a_number():
    event = parse("voice", forms.voice_request(From="client:agent_7", Caller="client:agent_7"))
    assert (event.from_number, event.from_client, event.from_raw) == (None, "agent_7", "client:agent_7")


def test_empty_from_is_absent():
    event = parse("voice", forms.voice_request(From="", CallerName=""))
    assert event.from_raw is None and event.from_number is None and event.caller_name is None


def test_unknown_region_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        parse("voice", forms.voice_request(), region="XX")
    with pytest.raises(ConfigurationError):
        parse_phone_number("601123456", "")


# --- malformed forms ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "form", "message"),
    [
        ("voice", {k: v for k, v in forms.voice_request().items() if k != "CallSid"}, "CallSid is missing"),
        ("voice", forms.voice_request(CallSid="CA123"), "CallSid is not a Twilio id"),
        (
            "voice",
            {k: v for k, v in forms.voice_request().items() if k != "AccountSid"},
            "AccountSid is missing",
        ),
        ("voice", {k: v for k, v in forms.voice_request().items() if k != "CallStatus"}, "no CallStatus"),
        ("status", forms.call_status("ended", 1, 1), "CallStatus has an unknown value"),
        (
            "status",
            forms.call_status("completed", 1, 1, Direction="sideways"),
            "Direction has an unknown value",
        ),
        (
            "status",
            {**forms.call_status("completed", 1, 1), "SequenceNumber": "x"},
            "SequenceNumber is not a whole",
        ),
        ("status", forms.call_status("completed", 1, 1, CallDuration="-5"), "CallDuration is not a whole"),
        (
            "status",
            {**forms.call_status("completed", 1, 1), "Timestamp": "yesterday"},
            "Timestamp is not an RFC 2822",
        ),
        ("status", forms.call_status("completed", 1, 1, CallerName="bad\x00name"), "control characters"),
        ("dial-result", forms.inbound_call(CallStatus="in-progress"), "DialCallStatus is missing"),
        (
            "dial-result",
            forms.dial_result("maybe", leg_sid=ALICE_LEG, duration=1, parent_status="in-progress"),
            "DialCallStatus has an unknown",
        ),
        ("recording", forms.inbound_call(CallStatus="completed"), "neither RecordingSid nor RecordingUrl"),
        (
            "recording",
            {**forms.recording_status("completed", 3), "RecordingUrl": "ftp://x/y"},
            "RecordingUrl is not an absolute",
        ),
        (
            "recording",
            {**forms.recording_status("completed", 3), "RecordingSid": "RE1"},
            "RecordingSid is not a Twilio id",
        ),
        (
            "transcription",
            {k: v for k, v in forms.transcription("x").items() if k != "TranscriptionSid"},
            "TranscriptionSid is missing",
        ),
        (
            "transcription",
            {k: v for k, v in forms.transcription("x").items() if k != "TranscriptionStatus"},
            "TranscriptionStatus is missing",
        ),
        ("voice", forms.voice_request(Digits="12a"), "Digits may contain only"),
        ("hangup", forms.voice_request(), "unknown Twilio webhook kind"),
    ],
)
def test_malformed_forms_are_invalid_input_with_a_clear_message(kind, form, message):
    with pytest.raises(InvalidInputError, match=message):
        parse(kind, form)


def test_bad_queue_is_invalid_input():
    with pytest.raises(InvalidInputError):
        parse_call_event("voice", forms.voice_request(), default_region="CZ", queue=" ")


def test_raw_form_is_kept_unchanged_and_read_only():
    form = forms.call_status("completed", 2, 141, CallDuration="141", SipResponseCode="200")
    event = parse("status", form)
    assert dict(event.form) == form
    form["CallDuration"] = "1"
    assert event.form["CallDuration"] == "141"
    with pytest.raises(TypeError):
        event.form["CallDuration"] = "2"  # type: ignore[index]


# --- idempotency keys -----------------------------------------------------------------------------------------


def key(kind: str, form: dict[str, str]) -> str:
    return event_key(parse(kind, form))


def test_a_repeated_delivery_has_the_same_key():
    form = forms.call_status("completed", 2, 141, CallDuration="141")
    assert key("status", form) == key("status", dict(form))
    assert key("status", form) == f"{CALL_SID}:status:2:completed"


def test_status_keys_differ_by_sequence_and_status():
    keys = {
        key("status", forms.call_status("ringing", 0, 0)),
        key("status", forms.call_status("in-progress", 1, 1)),
        key("status", forms.call_status("completed", 2, 9)),
        key(
            "status", {k: v for k, v in forms.call_status("completed", 2, 9).items() if k != "SequenceNumber"}
        ),
    }
    assert len(keys) == 4


def test_recording_in_progress_completed_and_action_are_three_events():
    keys = {
        key("recording", forms.recording_status("in-progress")),
        key("recording", forms.recording_status("completed", 24)),
        key("recording", forms.record_action(24)),
    }
    assert len(keys) == 3
    assert all(RECORDING_SID in k for k in keys)


def test_dial_result_voice_and_transcription_keys():
    assert key(
        "dial-result",
        forms.dial_result("no-answer", leg_sid=ALICE_LEG, duration=0, parent_status="in-progress"),
    ) == (f"{CALL_SID}:dial-result:{ALICE_LEG}")
    assert key("voice", forms.voice_request()) != key("voice", forms.voice_request(Digits="2"))
    assert (
        key("transcription", forms.transcription("x"))
        == f"{CALL_SID}:transcription:{TRANSCRIPTION_SID}:completed"
    )


def test_keys_use_a_safe_alphabet():
    for scenario in forms.SCENARIOS.values():
        for kind, form in scenario:
            assert all(char.isalnum() or char in ":._*#+-" for char in key(kind, form))


def test_recording_url_without_a_sid_gets_a_stable_hashed_key():
    form = {**forms.record_action(5), "RecordingUrl": "https://api.twilio.com/odd/recording"}
    event = parse("recording", form)
    assert event.recording_key is not None and event.recording_key.startswith("url-")
    assert event_key(event) == event_key(parse("recording", dict(form)))


def test_timestamp_with_a_negative_offset_is_the_same_instant():
    event = parse(
        "status", {**forms.call_status("ringing", 0, 0), "Timestamp": "Tue, 05 Mar 2024 04:00:00 -0500"}
    )
    assert event.timestamp == T0
    assert event.timestamp.tzinfo == timezone(timedelta(hours=-5))
