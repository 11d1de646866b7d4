"""TwiML answers parse as XML, carry the right verbs, attributes and language, and escape caller-visible text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from centrala.core.errors import InvalidInputError
from centrala.telephony.twiml import (
    SPEECH,
    TEXTS,
    default_text,
    greeting_and_dial,
    ivr_menu,
    say_and_hangup,
    voicemail,
)

BASE = "https://help.example.com/twilio"


def parse(twiml: str) -> ET.Element:
    assert twiml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(twiml.encode("utf-8"))
    assert root.tag == "Response"
    return root


def dial(**overrides: object) -> str:
    arguments: dict[str, object] = {
        "language": "cs",
        "clients": ["alice", "bob_2"],
        "phone_numbers": ["+420777888999"],
        "timeout_seconds": 25,
        "action_url": f"{BASE}/dial-result?queue=support",
    }
    arguments.update(overrides)
    return greeting_and_dial(**arguments)  # type: ignore[arg-type]


# --- greeting and dial -----------------------------------------------------------------------------------------


def test_greeting_then_dial_of_clients_and_phones():
    root = parse(dial(caller_id="+420222333444"))
    say, dial_element = list(root)
    assert say.tag == "Say"
    assert say.text == default_text("greeting", "cs")
    assert say.get("language") == "cs-CZ" and say.get("voice") == "Google.cs-CZ-Standard-A"
    assert dial_element.tag == "Dial"
    assert dial_element.get("action") == f"{BASE}/dial-result?queue=support"
    assert dial_element.get("method") == "POST"
    assert dial_element.get("timeout") == "25"
    assert dial_element.get("callerId") == "+420222333444"
    assert [(child.tag, (child.text or "").strip()) for child in dial_element] == [
        ("Client", "alice"),
        ("Client", "bob_2"),
        ("Number", "+420777888999"),
    ]


def test_leg_status_callback_is_set_on_every_dialled_leg():
    root = parse(dial(leg_status_callback=f"{BASE}/status"))
    for leg in root.find("Dial"):  # type: ignore[union-attr]
        assert leg.get("statusCallback") == f"{BASE}/status"
        assert leg.get("statusCallbackEvent") == "initiated ringing answered completed"


def test_greeting_with_markup_characters_is_escaped_text():
    greeting = 'Welcome to <Smith & Sons> "support"'
    twiml = dial(language="en", greeting_text=greeting)
    assert "<Smith" not in twiml and "&lt;Smith &amp; Sons&gt;" in twiml
    assert parse(twiml).find("Say").text == greeting  # type: ignore[union-attr]
    assert parse(twiml).find("Say").get("language") == "en-US"  # type: ignore[union-attr]


def test_query_ampersand_in_a_url_is_escaped_in_the_attribute():
    twiml = dial(action_url=f"{BASE}/dial-result?queue=support&lang=cs")
    assert "queue=support&amp;lang=cs" in twiml
    assert parse(twiml).find("Dial").get("action").endswith("queue=support&lang=cs")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "overrides",
    [
        {"clients": [], "phone_numbers": []},
        {"clients": ["alice smith"]},
        {"clients": ["<alice>"]},
        {"phone_numbers": ["777888999"]},
        {"timeout_seconds": 2},
        {"timeout_seconds": 601},
        {"action_url": "/twilio/dial-result"},
        {"action_url": "javascript:alert(1)"},
        {"caller_id": "222333444"},
        {"greeting_text": "  "},
        {"greeting_text": "bell\x07"},
        {"greeting_text": "x" * 5000},
        {"language": "de"},
        {"leg_status_callback": "ftp://example.com/status"},
    ],
)
def test_invalid_dial_arguments_are_refused(overrides):
    with pytest.raises(InvalidInputError):
        dial(**overrides)


# --- voicemail -------------------------------------------------------------------------------------------------


def test_voicemail_records_with_callbacks_and_ends_politely():
    root = parse(
        voicemail(
            language="en",
            max_length_seconds=120,
            recording_status_callback=f"{BASE}/recording",
            action_url=f"{BASE}/recording",
            transcribe_callback=f"{BASE}/transcription",
        )
    )
    assert [child.tag for child in root] == ["Say", "Record", "Say", "Hangup"]
    say, record, goodbye, _ = list(root)
    assert say.text == TEXTS["en"]["voicemail"]
    assert record.get("maxLength") == "120"
    assert record.get("playBeep") == "true"
    assert record.get("finishOnKey") == "#"
    assert record.get("action") == f"{BASE}/recording"
    assert record.get("recordingStatusCallback") == f"{BASE}/recording"
    assert record.get("recordingStatusCallbackEvent") == "in-progress completed absent"
    assert record.get("transcribe") == "true"
    assert record.get("transcribeCallback") == f"{BASE}/transcription"
    assert goodbye.text == TEXTS["en"]["goodbye"]


@pytest.mark.parametrize(("language", "max_length"), [("cs", 120), ("pl", 60), ("uk", 90), ("en", 300)])
def test_no_transcription_where_twilio_cannot_transcribe(language, max_length):
    record = parse(
        voicemail(
            language=language,
            max_length_seconds=max_length,
            recording_status_callback=f"{BASE}/recording",
            action_url=f"{BASE}/recording",
            transcribe_callback=f"{BASE}/transcription",
        )
    ).find("Record")
    assert record is not None
    assert record.get("transcribe") is None and record.get("transcribeCallback") is None


def test_closed_prompt_in_polish():
    root = parse(
        voicemail(
            language="pl",
            prompt=default_text("closed", "pl"),
            max_length_seconds=180,
            recording_status_callback=f"{BASE}/recording",
            action_url=f"{BASE}/recording",
        )
    )
    say = root.find("Say")
    assert say is not None and say.text == TEXTS["pl"]["closed"] and say.get("language") == "pl-PL"


@pytest.mark.parametrize("max_length", [0, 3601])
def test_voicemail_length_is_bounded(max_length):
    with pytest.raises(InvalidInputError):
        voicemail(
            language="en",
            max_length_seconds=max_length,
            recording_status_callback=f"{BASE}/recording",
            action_url=f"{BASE}/recording",
        )


# --- menu and goodbye --------------------------------------------------------------------------------------------


def test_menu_gathers_one_key_and_redirects_without_one():
    root = parse(
        ivr_menu(
            language="uk",
            options={"1": "Продажі", "2": "Підтримка", "*": "Оператор"},
            action_url=f"{BASE}/voice?step=menu",
        )
    )
    gather, redirect = list(root)
    assert gather.tag == "Gather"
    assert (gather.get("input"), gather.get("numDigits"), gather.get("timeout")) == ("dtmf", "1", "5")
    assert gather.get("action") == f"{BASE}/voice?step=menu"
    say = gather.find("Say")
    assert say is not None and say.get("language") == "uk-UA"
    assert say.text is not None
    assert say.text.startswith(TEXTS["uk"]["menu"])
    assert "Підтримка: натисніть 2." in say.text and "Оператор: натисніть зірочку." in say.text
    assert redirect.tag == "Redirect" and redirect.text == f"{BASE}/voice?step=menu"


@pytest.mark.parametrize(
    "options", [{}, {"12": "Two digits"}, {"a": "Letter"}, {"1": ""}, {"1": "tab\x0bbed"}]
)
def test_invalid_menus_are_refused(options):
    with pytest.raises(InvalidInputError):
        ivr_menu(language="en", options=options, action_url=f"{BASE}/voice")


def test_say_and_hangup_uses_the_localised_goodbye_or_the_given_text():
    root = parse(say_and_hangup(language="cs"))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == TEXTS["cs"]["goodbye"]
    assert parse(say_and_hangup(language="en-GB", text="Bye & thanks")).find("Say").text == "Bye & thanks"  # type: ignore[union-attr]
    assert parse(say_and_hangup(language="en-GB")).find("Say").get("language") == "en-GB"  # type: ignore[union-attr]


def test_every_language_has_every_text_and_a_voice():
    keys = set(TEXTS["en"])
    for language in ("en", "cs", "pl", "uk"):
        assert set(TEXTS[language]) == keys
        assert SPEECH[language].voice.startswith("Google." + SPEECH[language].language)
