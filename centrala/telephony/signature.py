"""Twilio webhook signatures (``X-Twilio-Signature``), checked against our public URL.

Twilio signs the URL it requested -- the one configured in its console, i.e. ``CENTRALA_PUBLIC_URL`` + path +
query -- followed by the sorted form parameters, with HMAC-SHA1 under the account's Auth Token
(https://www.twilio.com/docs/usage/webhooks/webhooks-security). Behind a reverse proxy the URL the application
sees (``http://internal:8000/...``) differs from that one, so the URL is rebuilt from the public base and never
taken from the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import parse_qs

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"

FormData = Mapping[str, str] | Iterable[tuple[str, str]]


class _MultiForm:
    """A read-only multi-valued form in the shape ``RequestValidator`` understands (keys plus ``getall``)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def getall(self, name: str) -> list[str]:
        return list(self._values[name])


def signed_url(*, public_url: str, path: str, query: str = "") -> str:
    """The URL Twilio signed: ``public_url`` without its trailing slash, ``path``, and ``?query`` if any.

    ``query`` is the raw query string exactly as received (without the ``?``), not re-encoded.

    Raises:
        ValueError: ``path`` does not start with ``/`` or ``public_url`` is not an http(s) URL.
    """
    if not path.startswith("/"):
        raise ValueError("the webhook path must start with '/'")
    if not public_url.startswith(("https://", "http://")):
        raise ValueError("the public URL must start with https:// or http://")
    return public_url.rstrip("/") + path + ("?" + query if query else "")


def verify_twilio_request(
    *,
    auth_token: str,
    public_url: str,
    path: str,
    query: str,
    form: FormData | None = None,
    signature: str | None,
    body: str | bytes | None = None,
) -> bool:
    """Whether ``signature`` is Twilio's signature of this request; missing or empty signature -> False.

    Form posts (every voice webhook) pass ``form``: a mapping, or a list of ``(name, value)`` pairs when a name
    repeats. JSON posts pass the raw ``body`` instead; Twilio then signs the URL, whose ``bodySHA256`` query
    parameter must equal the SHA-256 of the body.

    Args:
        auth_token: the account's Auth Token; empty -> False (an empty HMAC key is no secret at all).
        public_url: ``CENTRALA_PUBLIC_URL``, e.g. ``https://help.example.com``.
        path: the request path, e.g. ``/twilio/status``.
        query: the raw query string as received, without ``?`` (``""`` when there is none).
        form: the decoded form parameters of a form post.
        signature: the ``X-Twilio-Signature`` header value, or None when the header is missing.
        body: the raw body of a JSON post.
    """
    if not signature or not auth_token:
        return False
    url = signed_url(public_url=public_url, path=path, query=query)
    validator = RequestValidator(auth_token)
    if body is not None:
        # JSON webhooks: the body is covered through bodySHA256 in the (signed) URL, not as parameters.
        if "bodySHA256" not in parse_qs(query):
            return False
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
        except UnicodeDecodeError:
            return False
        return bool(validator.validate(url, text, signature))
    params: Mapping[str, str] | _MultiForm
    if form is None:
        params = {}
    elif isinstance(form, Mapping):
        params = form
    else:
        params = _MultiForm(form)
    return bool(validator.validate(url, params, signature))
