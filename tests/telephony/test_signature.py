"""Twilio signatures verify only for Twilio's exact public URL, parameters and our Auth Token."""

from __future__ import annotations

import hashlib

import pytest
from twilio.request_validator import RequestValidator

from centrala.telephony.signature import signed_url, verify_twilio_request
from tests.telephony.forms import call_status

TOKEN = "12345678901234567890123456789012"
PUBLIC_URL = "https://help.example.com"
PATH = "/twilio/status"


def sign(url: str, params: object, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def verify(**overrides: object) -> bool:
    arguments: dict[str, object] = {
        "auth_token": TOKEN,
        "public_url": PUBLIC_URL,
        "path": PATH,
        "query": "",
        "form": FORM,
        "signature": sign(PUBLIC_URL + PATH, FORM),
    }
    arguments.update(overrides)
    return verify_twilio_request(**arguments)  # type: ignore[arg-type]


FORM = call_status("completed", 2, 141, CallDuration="141")


def test_signature_of_twilio_request_verifies():
    assert verify()


def test_signature_under_another_token_is_refused():
    assert not verify(signature=sign(PUBLIC_URL + PATH, FORM, token="another-token-of-the-same-length!"))


def test_tampered_parameter_is_refused():
    assert not verify(form={**FORM, "CallDuration": "1"})


def test_added_parameter_is_refused():
    assert not verify(form={**FORM, "DialCallStatus": "completed"})


def test_signature_for_another_path_is_refused():
    assert not verify(signature=sign(PUBLIC_URL + "/twilio/voice", FORM))


def test_query_is_part_of_the_signed_url():
    url = PUBLIC_URL + "/twilio/dial-result?queue=support&lang=cs"
    signature = sign(url, FORM)
    assert verify(path="/twilio/dial-result", query="queue=support&lang=cs", signature=signature)
    assert not verify(path="/twilio/dial-result", query="queue=sales&lang=cs", signature=signature)
    assert not verify(path="/twilio/dial-result", query="", signature=signature)


def test_missing_or_empty_signature_is_refused():
    assert not verify(signature=None)
    assert not verify(signature="")


def test_empty_auth_token_is_refused_even_with_a_matching_signature():
    assert not verify(auth_token="", signature=sign(PUBLIC_URL + PATH, FORM, token=""))


def test_behind_a_proxy_only_the_public_url_verifies():
    """The app sees http://internal:8000, Twilio signed https://help.example.com: only the latter counts."""
    signature = sign("https://help.example.com/twilio/status", FORM)
    assert verify(public_url="https://help.example.com", signature=signature)
    assert verify(public_url="https://help.example.com/", signature=signature)
    assert not verify(public_url="http://internal:8000", signature=signature)
    internal_signature = sign("http://internal:8000/twilio/status", FORM)
    assert not verify(public_url="https://help.example.com", signature=internal_signature)


def test_public_url_with_a_path_prefix_is_kept():
    signature = sign("https://example.com/centrala/twilio/status", FORM)
    assert verify(public_url="https://example.com/centrala/", signature=signature)


def test_repeated_form_names_given_as_pairs_verify():
    pairs = [
        ("CallSid", FORM["CallSid"]),
        ("StatusCallbackEvent", "answered"),
        ("StatusCallbackEvent", "ringing"),
    ]

    class MultiDict(dict):
        def getall(self, name: str) -> list[str]:
            return [value for key, value in pairs if key == name]

    signature = sign(PUBLIC_URL + PATH, MultiDict(pairs))
    assert verify(form=pairs, signature=signature)
    assert not verify(form=pairs[:2], signature=signature)


def test_json_body_verifies_through_body_sha256():
    body = '{"CallSid": "CA00000000000000000000000000000000"}'
    digest = hashlib.sha256(body.encode()).hexdigest()
    query = f"bodySHA256={digest}"
    signature = sign(f"{PUBLIC_URL}{PATH}?{query}", {})
    assert verify(query=query, form=None, body=body, signature=signature)
    assert verify(query=query, form=None, body=body.encode(), signature=signature)
    assert not verify(query=query, form=None, body=body.replace("CA0", "CA1"), signature=signature)
    assert not verify(query="", form=None, body=body, signature=sign(PUBLIC_URL + PATH, {}))
    assert not verify(query=query, form=None, body=b"\xff\xfe", signature=signature)


def test_signed_url_is_public_base_path_and_query():
    assert signed_url(public_url="https://h.example/", path="/twilio/voice", query="a=1") == (
        "https://h.example/twilio/voice?a=1"
    )
    assert (
        signed_url(public_url="https://h.example", path="/twilio/voice") == "https://h.example/twilio/voice"
    )
    with pytest.raises(ValueError):
        signed_url(public_url="https://h.example", path="twilio/voice")
    with pytest.raises(ValueError):
        signed_url(public_url="help.example.com", path="/twilio/voice")
