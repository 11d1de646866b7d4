"""Checks shared by the server-rendered pages (console and portal) on every form they receive."""

from __future__ import annotations

from starlette.requests import Request


def comes_from_our_pages(request: Request, public_origin: str) -> bool:
    """Whether a POST was sent by one of our own pages, as far as the browser tells: ``Origin`` is ours and
    ``Sec-Fetch-Site`` is same-origin (or none, for a typed URL), when the browser sends them.

    Under ``Referrer-Policy: no-referrer`` browsers send ``Origin: null`` even for our own forms (Fetch §3.2.5),
    so null proves nothing either way; the form's CSRF token must always be checked as well.
    """
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and origin.rstrip("/").lower() != public_origin:
        return False
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
