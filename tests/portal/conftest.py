"""Portal test helpers: an HTTPS test client (``__Host-`` cookies are Secure) and signing in through a link."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from centrala.core.settings import get_settings
from centrala.portal import auth
from centrala.tickets.models import Contact, OutboundEmail, OutboundKind

LINK = re.compile(r"https?://\S+/portal/sign-in/([A-Za-z0-9_-]+)")


@pytest.fixture()
def portal_client(app, redis_url):
    """A client of the app over https://testserver, with rate limits counted in the run's Redis."""
    import redis
    from fastapi.testclient import TestClient

    from centrala.portal.views import get_portal_redis

    connection = redis.Redis.from_url(redis_url)
    app.dependency_overrides[get_portal_redis] = lambda: connection
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def last_link_secret(session: Session, address: str) -> str:
    """The secret of the newest sign-in link mailed to ``address``, read from the outbox's bytes."""
    outbound = session.scalars(
        select(OutboundEmail)
        .where(OutboundEmail.kind == OutboundKind.SIGN_IN, OutboundEmail.recipient == address)
        .order_by(OutboundEmail.id.desc())
    ).first()
    assert outbound is not None, f"no sign-in mail to {address}"
    body = message_from_bytes(outbound.raw, policy=default_policy).get_body(("plain",)).get_content()
    return LINK.search(body).group(1)


def issue_link(session: Session, contact: Contact, now, next_path: str | None = None) -> str:
    """Issue a sign-in link for the contact's first address (what the worker does) and return its secret."""
    address = contact.emails[0].address
    auth.issue_sign_in_link(session=session, address=address, next_path=next_path, now=now, settings=get_settings())
    session.flush()
    return last_link_secret(session, address)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(client, session: Session, contact: Contact, now) -> None:
    """Sign ``client`` in as ``contact`` through a real link: open it, then press the button."""
    secret = issue_link(session, contact, now)
    session.commit()
    page = client.get(f"/portal/sign-in/{secret}")
    assert page.status_code == 200, page.text
    response = client.post(f"/portal/sign-in/{secret}", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert response.status_code == 303, response.text
