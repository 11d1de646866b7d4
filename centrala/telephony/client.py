"""The Twilio REST calls Centrala makes, behind a small Protocol with a real and a fake implementation.

The real one talks to api.twilio.com with the twilio library (recordings are downloaded with httpx, because the
library's HTTP client returns bodies as text). The fake records what it was asked to do, for tests and for the
embedded default, where Twilio is out of reach. Both validate their arguments the same way, so code that passes
against the fake does not fail against Twilio on a malformed number or URL.

Errors: a network failure, timeout, 429 or 5xx is ``TemporaryFailure`` (retry later); bad credentials are
``ConfigurationError``; any other refusal is ``InvalidInputError`` (retrying will not help).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Literal, Protocol
from urllib.parse import urlsplit

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from centrala.core.errors import (
    ConfigurationError,
    InvalidInputError,
    TemporaryFailure,
)

_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
DEFAULT_TIMEOUT_SECONDS = 15.0
TWILIO_API_HOST = "api.twilio.com"


class TwilioClient(Protocol):
    """What Centrala asks of Twilio's REST API."""

    def fetch_recording_bytes(self, recording_url: str) -> bytes:
        """The audio (MP3) of the recording at ``recording_url`` (a Twilio ``RecordingUrl``)."""
        ...

    def update_call(self, call_sid: str, *, twiml: str | None = None, url: str | None = None) -> None:
        """Send a live call on to new TwiML, given inline or as a URL to fetch it from (exactly one)."""
        ...

    def end_call(self, call_sid: str) -> None:
        """Hang up a live call."""
        ...

    def place_callback_call(
        self, *, to: str, from_: str, url: str, status_callback: str | None = None
    ) -> str:
        """Call ``to`` from our number ``from_``, running the TwiML at ``url`` when answered; the new CallSid."""
        ...

    def fetch_call(self, call_sid: str) -> dict[str, str]:
        """The call as Twilio's REST API has it, in the parameters of a status callback (``CallSid``,
        ``AccountSid``, ``CallStatus``, ``Direction``, ``From``, ``To``, ``CallDuration``, ``Timestamp``)."""
        ...


# --- argument checks shared by both implementations -------------------------------------------------------------


def check_call_sid(call_sid: str) -> str:
    """``call_sid`` if it is a Twilio CallSid; else InvalidInputError."""
    if not _CALL_SID.fullmatch(call_sid or ""):
        raise InvalidInputError("not a Twilio CallSid (CA and 32 hex digits)")
    return call_sid


def check_recording_url(recording_url: str, api_host: str = TWILIO_API_HOST) -> str:
    """``recording_url`` if it is an https URL on Twilio's API hosts (or on ``api_host``); else InvalidInputError.

    The download carries our account credentials, so it goes to Twilio and nowhere else. ``api_host`` other
    than Twilio's is for a local stand-in (tests, an egress proxy); plain http is accepted only on loopback.
    """
    parts = urlsplit(recording_url or "")
    host = (parts.hostname or "").lower()
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    if api_host == TWILIO_API_HOST:
        allowed = parts.scheme == "https" and (host == TWILIO_API_HOST or host.endswith(".twilio.com"))
    else:
        loopback = host in ("127.0.0.1", "localhost", "::1")
        allowed = netloc == api_host and (parts.scheme == "https" or loopback)
    if not allowed:
        raise InvalidInputError(f"a recording URL must be an https URL on {api_host}")
    if "/Recordings/" not in parts.path:
        raise InvalidInputError("a recording URL names a Recordings resource")
    return recording_url


def _check_e164(name: str, number: str) -> str:
    if not _E164.fullmatch(number or ""):
        raise InvalidInputError(f"{name} must be an E.164 phone number")
    return number


def _check_url(name: str, url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("https", "http") or not parts.hostname or any(c.isspace() for c in url):
        raise InvalidInputError(f"{name} must be an absolute http(s) URL")
    return url


def _check_target(twiml: str | None, url: str | None) -> None:
    if (twiml is None) == (url is None):
        raise InvalidInputError("give exactly one of twiml or url")
    if url is not None:
        _check_url("url", url)
    elif not twiml or not twiml.lstrip().startswith("<"):
        raise InvalidInputError("twiml must be a TwiML document")


# --- the real client --------------------------------------------------------------------------------------------


class RealTwilioClient:
    """``TwilioClient`` on Twilio's REST API, authenticated with the account sid and Auth Token."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        http_client: HttpClient | None = None,
        api_host: str = TWILIO_API_HOST,
    ) -> None:
        if not _ACCOUNT_SID.fullmatch(account_sid or ""):
            raise ConfigurationError("the Twilio account sid must be AC and 32 hex digits")
        if not auth_token:
            raise ConfigurationError("the Twilio Auth Token is empty")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._timeout = timeout
        self._api_host = api_host
        self._client = Client(
            account_sid, auth_token, http_client=http_client or TwilioHttpClient(timeout=timeout)
        )

    def __repr__(self) -> str:  # never the token
        return f"RealTwilioClient(account_sid={self._account_sid!r})"

    def fetch_recording_bytes(self, recording_url: str) -> bytes:
        """The recording as MP3 (Twilio serves ``<RecordingUrl>.mp3``; the bare URL is WAV)."""
        url = check_recording_url(recording_url, self._api_host)
        path = urlsplit(url).path
        if not path.endswith((".mp3", ".wav")):
            url = url.split("?", 1)[0] + ".mp3"
        try:
            response = httpx.get(url, auth=(self._account_sid, self._auth_token), timeout=self._timeout)
        except httpx.HTTPError as error:
            raise TemporaryFailure(f"recording download failed: {type(error).__name__}") from error
        _raise_for_status(response.status_code, "recording download")
        return response.content

    def update_call(self, call_sid: str, *, twiml: str | None = None, url: str | None = None) -> None:
        """Redirect the live call to ``twiml`` or ``url``."""
        check_call_sid(call_sid)
        _check_target(twiml, url)
        with _twilio_errors("call update"):
            if twiml is not None:
                self._client.calls(call_sid).update(twiml=twiml)
            else:
                self._client.calls(call_sid).update(url=url, method="POST")

    def end_call(self, call_sid: str) -> None:
        """Hang up the live call."""
        check_call_sid(call_sid)
        with _twilio_errors("call hang-up"):
            self._client.calls(call_sid).update(status="completed")

    def place_callback_call(
        self, *, to: str, from_: str, url: str, status_callback: str | None = None
    ) -> str:
        """Place the call; Twilio answers with its CallSid at once and calls ``url`` when ``to`` picks up."""
        _check_e164("to", to)
        _check_e164("from_", from_)
        _check_url("url", url)
        options: dict[str, object] = {}
        if status_callback is not None:
            options = {
                "status_callback": _check_url("status_callback", status_callback),
                "status_callback_event": ["initiated", "ringing", "answered", "completed"],
                "status_callback_method": "POST",
            }
        with _twilio_errors("call placement"):
            call = self._client.calls.create(to=to, from_=from_, url=url, method="POST", **options)
        return str(call.sid)

    def fetch_call(self, call_sid: str) -> dict[str, str]:
        """The call resource, as a status callback form."""
        check_call_sid(call_sid)
        with _twilio_errors("call fetch"):
            call = self._client.calls(call_sid).fetch()
        return _call_as_form(call)


def _call_as_form(call: object) -> dict[str, str]:
    """A fetched call resource as the form of the status callback that would have reported it."""
    form = {
        "CallSid": str(getattr(call, "sid", "")),
        "AccountSid": str(getattr(call, "account_sid", "")),
        "CallStatus": str(getattr(call, "status", "")),
        "Direction": str(getattr(call, "direction", "") or ""),
        "From": str(getattr(call, "from_", "") or ""),
        "To": str(getattr(call, "to", "") or ""),
    }
    duration = getattr(call, "duration", None)
    if duration not in (None, ""):
        form["CallDuration"] = str(duration)
    ended = getattr(call, "end_time", None)
    if ended is not None:
        form["Timestamp"] = format_datetime(ended, usegmt=True)
    parent = getattr(call, "parent_call_sid", None)
    if parent:
        form["ParentCallSid"] = str(parent)
    return {name: value for name, value in form.items() if value}


@contextmanager
def _twilio_errors(what: str) -> Iterator[None]:
    """Turns the twilio library's exceptions into ours (see the module docstring)."""
    try:
        yield
    except TwilioRestException as error:
        _raise_for_status(error.status, what, code=error.code, cause=error)
        raise
    except (TwilioException, OSError) as error:  # requests' connection errors are OSErrors
        raise TemporaryFailure(f"Twilio {what} failed: {type(error).__name__}") from error


def _raise_for_status(
    status: int, what: str, *, code: int | None = None, cause: BaseException | None = None
) -> None:
    if status < 400:
        return
    detail = f"Twilio {what} failed with HTTP {status}" + (f" (error {code})" if code else "")
    if status in (401, 403):
        raise ConfigurationError(detail + ": check the account sid and Auth Token") from cause
    # 404 on a recording just reported may mean Twilio has not finished storing it yet.
    if status in (404, 408, 409, 425, 429) or status >= 500:
        raise TemporaryFailure(detail) from cause
    raise InvalidInputError(detail) from cause


# --- the fake ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeRequest:
    """One request the fake received: the method name and its arguments."""

    method: str
    arguments: dict[str, object]


@dataclass
class FakeTwilioClient:
    """``TwilioClient`` that records every request in ``requests`` and answers from memory.

    ``recordings`` maps recording URLs to their audio; an unknown one is ``TemporaryFailure``, as Twilio's 404
    for a recording is (it may not be stored yet).
    """

    recordings: dict[str, bytes] = field(default_factory=dict)
    requests: list[FakeRequest] = field(default_factory=list)
    # Where recordings not in ``recordings`` come from (e.g. a real download); None: they are missing.
    download: Callable[[str], bytes] | None = None
    # Call resources by CallSid, as status callback forms, for ``fetch_call``.
    calls: dict[str, dict[str, str]] = field(default_factory=dict)
    _placed: int = field(default=0, init=False, repr=False)

    def fetch_call(self, call_sid: str) -> dict[str, str]:
        """The call registered in ``calls``; an unknown one is a 404, as Twilio's."""
        check_call_sid(call_sid)
        self.requests.append(FakeRequest("fetch_call", {"call_sid": call_sid}))
        try:
            return dict(self.calls[call_sid])
        except KeyError:
            raise InvalidInputError(f"Twilio call fetch failed with HTTP 404 (fake client): {call_sid}") from None

    def fetch_recording_bytes(self, recording_url: str) -> bytes:
        """The audio registered for ``recording_url``."""
        self.requests.append(FakeRequest("fetch_recording_bytes", {"recording_url": recording_url}))
        if recording_url not in self.recordings and self.download is not None:
            return self.download(recording_url)  # the real client checks the URL against its API host
        check_recording_url(recording_url)
        try:
            return self.recordings[recording_url]
        except KeyError:
            raise TemporaryFailure("Twilio recording download failed with HTTP 404 (fake client)") from None

    def update_call(self, call_sid: str, *, twiml: str | None = None, url: str | None = None) -> None:
        """Record the redirect."""
        check_call_sid(call_sid)
        _check_target(twiml, url)
        self.requests.append(FakeRequest("update_call", {"call_sid": call_sid, "twiml": twiml, "url": url}))

    def end_call(self, call_sid: str) -> None:
        """Record the hang-up."""
        check_call_sid(call_sid)
        self.requests.append(FakeRequest("end_call", {"call_sid": call_sid}))

    def place_callback_call(
        self, *, to: str, from_: str, url: str, status_callback: str | None = None
    ) -> str:
        """Record the call and return a new, well-formed CallSid."""
        _check_e164("to", to)
        _check_e164("from_", from_)
        _check_url("url", url)
        if status_callback is not None:
            _check_url("status_callback", status_callback)
        self._placed += 1
        call_sid = f"CA{self._placed:032x}"
        self.requests.append(
            FakeRequest(
                "place_callback_call",
                {
                    "to": to,
                    "from_": from_,
                    "url": url,
                    "status_callback": status_callback,
                    "call_sid": call_sid,
                },
            )
        )
        return call_sid


def make_twilio_client(
    *,
    backend: Literal["twilio", "fake"],
    account_sid: str | None = None,
    auth_token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    api_host: str = TWILIO_API_HOST,
) -> TwilioClient:
    """The Twilio client for ``backend``: ``twilio`` (needs the account sid and Auth Token) or ``fake``.

    The fake places no calls; with credentials it still downloads recordings from ``api_host`` for real.

    Raises:
        ConfigurationError: an unknown backend, or ``twilio`` without valid credentials.
    """
    if backend == "fake":
        if account_sid and auth_token:
            real = RealTwilioClient(account_sid, auth_token, timeout=timeout, api_host=api_host)
            return FakeTwilioClient(download=real.fetch_recording_bytes)
        return FakeTwilioClient()
    if backend == "twilio":
        if not account_sid or not auth_token:
            raise ConfigurationError("the twilio backend needs the account sid and the Auth Token")
        return RealTwilioClient(account_sid, auth_token, timeout=timeout, api_host=api_host)
    raise ConfigurationError(f"unknown Twilio client backend {backend!r}; use 'twilio' or 'fake'")
