"""Magic-link sign-in: neutral answers, single use, expiry, revocation, scanners, sessions and CSRF."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from centrala.core import clock
from centrala.core.settings import get_settings
from centrala.portal import auth, views
from centrala.portal.models import PortalSession, PortalSignInToken
from tests.factories import make_contact
from tests.portal.conftest import csrf_of, issue_link, sign_in


def _sign_in_page(client) -> str:
    return csrf_of(client.get("/portal").text)


def test_known_and_unknown_address_get_the_same_answer(portal_client, session):
    make_contact(session, emails=["known@example.org"])
    session.commit()
    token = _sign_in_page(portal_client)
    known = portal_client.post("/portal/sign-in", data={"csrf": token, "email": "known@example.org"})
    unknown = portal_client.post("/portal/sign-in", data={"csrf": token, "email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text


def test_link_is_mailed_only_to_a_known_address_and_stored_hashed(session):
    contact = make_contact(session, emails=["jana@example.org"])
    now = clock.now()
    assert auth.issue_sign_in_link(
        session=session, address="nobody@example.org", next_path=None, now=now, settings=get_settings()
    ) is None
    secret = issue_link(session, contact, now)
    row = session.scalars(select(PortalSignInToken).where(PortalSignInToken.contact_id == contact.id)).one()
    assert len(secret) >= 43  # 256 bits in URL-safe base64
    assert row.token_hash == auth.hash_secret(secret) and secret not in row.token_hash
    assert row.expires_at - row.created_at == timedelta(minutes=10)


def test_opening_the_link_does_not_use_it_up(portal_client, session):
    contact = make_contact(session)
    secret = issue_link(session, contact, clock.now())
    session.commit()
    for _ in range(3):  # a mail scanner, a preview, the person
        assert portal_client.get(f"/portal/sign-in/{secret}").status_code == 200
    page = portal_client.get(f"/portal/sign-in/{secret}")
    response = portal_client.post(f"/portal/sign-in/{secret}", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/portal/tickets"


def test_link_works_once(portal_client, session):
    contact = make_contact(session)
    secret = issue_link(session, contact, clock.now())
    session.commit()
    token = csrf_of(portal_client.get(f"/portal/sign-in/{secret}").text)
    assert portal_client.post(f"/portal/sign-in/{secret}", data={"csrf": token}, follow_redirects=False).status_code == 303
    portal_client.cookies.clear()
    token = _sign_in_page(portal_client)
    again = portal_client.post(f"/portal/sign-in/{secret}", data={"csrf": token}, follow_redirects=False)
    assert again.status_code == 410
    assert portal_client.get(f"/portal/sign-in/{secret}").status_code == 410


def test_expired_link_does_not_sign_in(portal_client, session):
    contact = make_contact(session)
    secret = issue_link(session, contact, clock.now() - timedelta(minutes=11))
    session.commit()
    token = _sign_in_page(portal_client)
    assert portal_client.get(f"/portal/sign-in/{secret}").status_code == 410
    assert portal_client.post(f"/portal/sign-in/{secret}", data={"csrf": token}, follow_redirects=False).status_code == 410


def test_newer_link_revokes_older_ones(portal_client, session):
    contact = make_contact(session)
    older = issue_link(session, contact, clock.now())
    newer = issue_link(session, contact, clock.now())
    session.commit()
    token = _sign_in_page(portal_client)
    assert portal_client.post(f"/portal/sign-in/{older}", data={"csrf": token}, follow_redirects=False).status_code == 410
    assert portal_client.post(f"/portal/sign-in/{newer}", data={"csrf": token}, follow_redirects=False).status_code == 303


def test_session_cookie_is_host_only_secure_httponly_lax_and_rotated(portal_client, session):
    contact = make_contact(session)
    sign_in(portal_client, session, contact, clock.now())
    first = portal_client.cookies.get(auth.SESSION_COOKIE)
    secret = issue_link(session, contact, clock.now())
    session.commit()
    token = csrf_of(portal_client.get(f"/portal/sign-in/{secret}").text)
    response = portal_client.post(f"/portal/sign-in/{secret}", data={"csrf": token}, follow_redirects=False)
    header = response.headers["set-cookie"]
    assert header.startswith(f"{auth.SESSION_COOKIE}=")
    for attribute in ("Secure", "HttpOnly", "SameSite=lax", "Path=/"):
        assert attribute.lower() in header.lower()
    assert "domain" not in header.lower()
    second = portal_client.cookies.get(auth.SESSION_COOKIE)
    assert second != first
    rows = session.scalars(select(PortalSession).where(PortalSession.contact_id == contact.id)).all()
    session.expire_all()
    revoked = {row.session_hash: row.revoked_at for row in rows}
    assert revoked[auth.hash_secret(first)] is not None and revoked[auth.hash_secret(second)] is None


def test_sign_out_revokes_the_session(portal_client, session):
    contact = make_contact(session)
    sign_in(portal_client, session, contact, clock.now())
    stolen = portal_client.cookies.get(auth.SESSION_COOKIE)
    page = portal_client.get("/portal/tickets")
    portal_client.post("/portal/sign-out", data={"csrf": csrf_of(page.text)})
    portal_client.cookies.set(auth.SESSION_COOKIE, stolen)
    response = portal_client.get("/portal/tickets", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/portal?next=")


def test_post_without_token_or_from_another_site_is_refused(portal_client, session):
    contact = make_contact(session)
    sign_in(portal_client, session, contact, clock.now())
    token = csrf_of(portal_client.get("/portal/tickets").text)
    assert portal_client.post("/portal/sign-out", data={"csrf": "x" * 64}).status_code == 403
    foreign = portal_client.post("/portal/sign-out", data={"csrf": token}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    cross = portal_client.post("/portal/sign-out", data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert portal_client.get("/portal/tickets").status_code == 200


def test_sign_in_requests_are_limited_per_client(portal_client, session, monkeypatch):
    settings = get_settings()
    monkeypatch.setattr(settings, "portal_sign_in_per_client", 2)
    monkeypatch.setattr(settings, "portal_rate_window_seconds", 30)
    fixed = f"client-{uuid.uuid4()}"
    monkeypatch.setattr(views, "client_key", lambda request: fixed)
    token = _sign_in_page(portal_client)
    answers = [
        portal_client.post("/portal/sign-in", data={"csrf": token, "email": f"x{i}@rate.example"}).status_code
        for i in range(3)
    ]
    assert answers[:2] == [200, 200] and answers[2] == 429


def test_sign_in_requests_are_limited_per_address_silently(portal_client, session, monkeypatch, redis_url):
    import redis

    settings = get_settings()
    monkeypatch.setattr(settings, "portal_sign_in_per_address", 1)
    connection = redis.Redis.from_url(redis_url)
    key, namespace = "address:limit@example.org", settings.queue_name
    assert auth.allow_attempt(client=connection, key=key, limit=1, window_seconds=30, namespace=namespace)
    assert not auth.allow_attempt(client=connection, key=key, limit=1, window_seconds=30, namespace=namespace)
    token = _sign_in_page(portal_client)
    answer = portal_client.post("/portal/sign-in", data={"csrf": token, "email": "limit@example.org"})
    assert answer.status_code == 200 and "sign-in link is on its way" in answer.text


def test_security_headers_on_portal_pages(portal_client):
    response = portal_client.get("/portal")
    csp = response.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in response.headers  # the test's public URL is http


def test_hsts_when_the_public_url_is_https(session):
    from fastapi.testclient import TestClient

    from centrala.app import create_app

    settings = get_settings().model_copy(update={"public_url": "https://help.example.com"})
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        assert "max-age" in client.get("/portal/static/portal.css").headers["strict-transport-security"]


def test_links_are_built_from_the_public_url_not_the_host_header(portal_client, session):
    contact = make_contact(session)
    issue_link(session, contact, clock.now())
    from tests.portal.conftest import last_link_secret  # noqa: F401  (the link format is checked there)
    from centrala.tickets.models import OutboundEmail, OutboundKind

    raw = session.scalars(select(OutboundEmail.raw).where(OutboundEmail.kind == OutboundKind.SIGN_IN)).all()[-1]
    assert get_settings().public_url.encode() + b"/portal/sign-in/" in raw.replace(b"=\n", b"")


def test_next_path_only_leads_to_portal_pages():
    assert auth.safe_next_path("/portal/tickets/T-1001") == "/portal/tickets/T-1001"
    for bad in ("https://evil.example/", "//evil.example", "/portal/../api", "/api/v1/tickets", "/portal?x=1"):
        assert auth.safe_next_path(bad) is None
