"""The Twilio REST client behind a Protocol: the fake records, the real one builds Twilio's requests offline."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from twilio.http import HttpClient
from twilio.http.response import Response

from centrala.core.errors import ConfigurationError, InvalidInputError, TemporaryFailure
from centrala.telephony import client as client_module
from centrala.telephony.client import (
    FakeTwilioClient,
    RealTwilioClient,
    TwilioClient,
    check_recording_url,
    make_twilio_client,
)
from tests.telephony.forms import ACCOUNT_SID, CALL_SID, RECORDING_URL

TOKEN = "0123456789abcdef0123456789abcdef"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'


class RecordingHttpClient(HttpClient):
    """A twilio HttpClient that answers from memory and remembers the requests: no network."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        super().__init__(logging.getLogger("test"), False)
        self.status = status
        self.body = body or {"sid": CALL_SID, "status": "queued"}
        self.requests: list[dict[str, Any]] = []

    def request(  # type: ignore[override]
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self.requests.append({"method": method, "uri": uri, "data": dict(data or {}), "auth": auth})
        return Response(self.status, json.dumps(self.body))


# --- the factory and construction ------------------------------------------------------------------------------


def test_factory_gives_the_fake_or_the_real_client():
    assert isinstance(make_twilio_client(backend="fake"), FakeTwilioClient)
    real = make_twilio_client(backend="twilio", account_sid=ACCOUNT_SID, auth_token=TOKEN)
    assert isinstance(real, RealTwilioClient)
    for implementation in (FakeTwilioClient(), real):
        candidate: TwilioClient = implementation
        assert callable(candidate.place_callback_call)


@pytest.mark.parametrize(
    ("backend", "account_sid", "auth_token"),
    [
        ("twilio", None, TOKEN),
        ("twilio", ACCOUNT_SID, ""),
        ("twilio", "not-a-sid", TOKEN),
        ("vonage", ACCOUNT_SID, TOKEN),
    ],
)
def test_factory_refuses_a_bad_configuration(backend, account_sid, auth_token):
    with pytest.raises(ConfigurationError):
        make_twilio_client(backend=backend, account_sid=account_sid, auth_token=auth_token)  # type: ignore[arg-type]


def test_real_client_repr_never_shows_the_token():
    assert TOKEN not in repr(RealTwilioClient(ACCOUNT_SID, TOKEN))


# --- the real client against an in-memory HTTP client -----------------------------------------------------------


def test_real_client_places_a_call_back_with_status_callbacks():
    http = RecordingHttpClient(201)
    real = RealTwilioClient(ACCOUNT_SID, TOKEN, http_client=http)
    call_sid = real.place_callback_call(
        to="+420601123456",
        from_="+420222333444",
        url="https://help.example.com/twilio/voice?callback=1",
        status_callback="https://help.example.com/twilio/status",
    )
    assert call_sid == CALL_SID
    (request,) = http.requests
    assert request["method"] == "POST"
    assert request["uri"].endswith(f"/Accounts/{ACCOUNT_SID}/Calls.json")
    assert request["auth"] == (ACCOUNT_SID, TOKEN)
    assert request["data"]["To"] == "+420601123456" and request["data"]["From"] == "+420222333444"
    assert request["data"]["StatusCallback"] == "https://help.example.com/twilio/status"


def test_real_client_redirects_and_ends_calls():
    http = RecordingHttpClient(200)
    real = RealTwilioClient(ACCOUNT_SID, TOKEN, http_client=http)
    real.update_call(CALL_SID, twiml=TWIML)
    real.update_call(CALL_SID, url="https://help.example.com/twilio/voice")
    real.end_call(CALL_SID)
    assert [r["uri"].rsplit("/", 1)[-1] for r in http.requests] == [f"{CALL_SID}.json"] * 3
    assert http.requests[0]["data"] == {"Twiml": TWIML}
    assert http.requests[1]["data"]["Url"] == "https://help.example.com/twilio/voice"
    assert http.requests[2]["data"] == {"Status": "completed"}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, ConfigurationError),
        (404, TemporaryFailure),
        (429, TemporaryFailure),
        (503, TemporaryFailure),
        (400, InvalidInputError),
    ],
)
def test_real_client_maps_twilio_errors(status, error):
    http = RecordingHttpClient(status, {"code": 20404, "message": "nope", "status": status})
    real = RealTwilioClient(ACCOUNT_SID, TOKEN, http_client=http)
    with pytest.raises(error):
        real.end_call(CALL_SID)


def test_real_client_downloads_mp3_with_credentials_only_from_twilio(monkeypatch):
    seen: list[tuple[str, object]] = []

    def fake_get(url: str, *, auth: object, timeout: float) -> httpx.Response:
        seen.append((url, auth))
        return httpx.Response(200, content=b"ID3audio")

    monkeypatch.setattr(client_module.httpx, "get", fake_get)
    real = RealTwilioClient(ACCOUNT_SID, TOKEN)
    assert real.fetch_recording_bytes(RECORDING_URL) == b"ID3audio"
    assert seen == [(RECORDING_URL + ".mp3", (ACCOUNT_SID, TOKEN))]
    with pytest.raises(InvalidInputError):
        real.fetch_recording_bytes("https://evil.example.com/Recordings/RE1")
    assert len(seen) == 1


def test_real_client_download_failures_are_temporary(monkeypatch):
    def failing_get(url: str, **_: object) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out")

    monkeypatch.setattr(client_module.httpx, "get", failing_get)
    with pytest.raises(TemporaryFailure):
        RealTwilioClient(ACCOUNT_SID, TOKEN).fetch_recording_bytes(RECORDING_URL)


# --- the fake --------------------------------------------------------------------------------------------------


def test_fake_records_requests_and_returns_well_formed_call_sids():
    fake = FakeTwilioClient(recordings={RECORDING_URL: b"audio"})
    first = fake.place_callback_call(to="+420601123456", from_="+420222333444", url="https://h.example/voice")
    second = fake.place_callback_call(to="+48512345678", from_="+420222333444", url="https://h.example/voice")
    fake.update_call(first, url="https://h.example/voice?step=2")
    fake.end_call(second)
    assert fake.fetch_recording_bytes(RECORDING_URL) == b"audio"
    assert first != second and all(len(sid) == 34 and sid.startswith("CA") for sid in (first, second))
    assert [request.method for request in fake.requests] == [
        "place_callback_call",
        "place_callback_call",
        "update_call",
        "end_call",
        "fetch_recording_bytes",
    ]
    assert fake.requests[0].arguments["to"] == "+420601123456"


def test_fake_refuses_what_twilio_would_refuse():
    fake = FakeTwilioClient()
    with pytest.raises(InvalidInputError):
        fake.place_callback_call(to="601123456", from_="+420222333444", url="https://h.example/voice")
    with pytest.raises(InvalidInputError):
        fake.place_callback_call(to="+420601123456", from_="+420222333444", url="/voice")
    with pytest.raises(InvalidInputError):
        fake.update_call(CALL_SID)
    with pytest.raises(InvalidInputError):
        fake.update_call(CALL_SID, twiml=TWIML, url="https://h.example/voice")
    with pytest.raises(InvalidInputError):
        fake.end_call("CA123")
    assert fake.requests == []
    with pytest.raises(TemporaryFailure):  # as Twilio's 404 for a recording not stored yet
        fake.fetch_recording_bytes(RECORDING_URL)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
        "https://api.twilio.com.evil.example/Recordings/RE1",
        "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls/CA1",
        "",
    ],
)
def test_recording_urls_must_be_twilio_https_recordings(url):
    with pytest.raises(InvalidInputError):
        check_recording_url(url)
