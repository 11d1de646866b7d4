"""Portal sign-in by magic link, server-side sessions, rate limits and CSRF tokens.

A link carries 256 random bits; only their sha256 is stored. It lives ``portal_link_minutes``, works once, and
a newer link revokes the older ones. Opening it (GET) only shows a confirmation page: mail scanners that
follow every link in a message must not use it up, so only the POST from that page consumes it (with a
conditional UPDATE, so two POSTs at once sign in once). A session is likewise a random secret in a
``__Host-`` cookie with only its hash stored; a new one is made at every sign-in and revoked at sign-out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from centrala.core.errors import InvalidInputError
from centrala.core.settings import Settings
from centrala.portal.models import PortalSession, PortalSignInToken
from centrala.tickets.contacts import normalise_email
from centrala.tickets.models import Contact, ContactEmail
from centrala.tickets.outbox import queue_sign_in_link

log = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-centrala_session"
CSRF_COOKIE = "__Host-centrala_csrf"
LANGUAGE_COOKIE = "__Host-centrala_lang"
SIGN_IN_JOB = "centrala.workers.jobs.send_portal_sign_in_link"
TOKEN_BYTES = 32
# Where a link may lead after sign-in: a portal page, nothing else (no open redirect).
_NEXT_PATH = re.compile(r"/portal(/[A-Za-z0-9_-]+){0,4}")
_ADDRESS = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")


def hash_secret(secret: str) -> str:
    """The sha256 hex digest we store for a link or session secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def safe_next_path(path: str | None) -> str | None:
    """``path`` when it is a portal page to return to after sign-in, else None."""
    return path if path and len(path) <= 200 and _NEXT_PATH.fullmatch(path) else None


def normalise_sign_in_address(address: str) -> str | None:
    """The address as contacts store it, or None when it cannot be an e-mail address."""
    address = (address or "").strip()
    if len(address) > 320 or not _ADDRESS.fullmatch(address):
        return None
    try:
        return normalise_email(address)
    except InvalidInputError:
        return None


# --- Links ------------------------------------------------------------------------------------------------


def issue_sign_in_link(
    *, session: Session, address: str, next_path: str | None, now: datetime, settings: Settings
) -> PortalSignInToken | None:
    """Mail a new sign-in link to ``address`` when it is a deliverable address of a contact; revoke older
    links. Returns the stored link, or None when the address is unknown (the caller's answer is the same)."""
    contact_id = session.scalar(
        select(ContactEmail.contact_id).where(
            ContactEmail.address == address, ContactEmail.undeliverable_at.is_(None)
        )
    )
    if contact_id is None:
        log.info("sign-in requested for an unknown address")
        return None
    contact = session.get(Contact, contact_id)
    session.execute(
        update(PortalSignInToken)
        .where(
            PortalSignInToken.contact_id == contact_id,
            PortalSignInToken.used_at.is_(None),
            PortalSignInToken.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    secret = secrets.token_urlsafe(TOKEN_BYTES)
    token = PortalSignInToken(
        contact_id=contact_id,
        token_hash=hash_secret(secret),
        next_path=safe_next_path(next_path),
        created_at=now,
        expires_at=now + timedelta(minutes=settings.portal_link_minutes),
    )
    session.add(token)
    session.flush()
    link = f"{settings.public_url.rstrip('/')}/portal/sign-in/{secret}"
    queue_sign_in_link(session=session, contact=contact, address=address, link=link, now=now, settings=settings)
    log.info("sign-in link %s issued to contact %s", token.id, contact_id)
    return token


def find_usable_link(*, session: Session, secret: str, now: datetime) -> PortalSignInToken | None:
    """The link behind ``secret`` if it can still sign in (unused, not revoked, not expired); reads only."""
    token = session.scalar(select(PortalSignInToken).where(PortalSignInToken.token_hash == hash_secret(secret)))
    if token is None or token.used_at is not None or token.revoked_at is not None or token.expires_at <= now:
        return None
    return token


def consume_sign_in_link(*, session: Session, secret: str, now: datetime) -> PortalSignInToken | None:
    """Use up the link behind ``secret``; None when it is unknown, used, revoked or expired."""
    token_hash = hash_secret(secret)
    used = session.execute(
        update(PortalSignInToken)
        .where(
            PortalSignInToken.token_hash == token_hash,
            PortalSignInToken.used_at.is_(None),
            PortalSignInToken.revoked_at.is_(None),
            PortalSignInToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:
        return None
    token = session.scalar(select(PortalSignInToken).where(PortalSignInToken.token_hash == token_hash))
    if token is not None:
        session.refresh(token)
    return token


# --- Sessions ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie's secret (to send once) and the stored row."""

    secret: str
    row: PortalSession


def start_session(
    *, session: Session, contact_id: int, now: datetime, settings: Settings, replaces: str | None = None
) -> SignedIn:
    """Open a new session for the contact, revoking the one the browser had (``replaces``), if any."""
    if replaces:
        end_session(session=session, secret=replaces, now=now)
    secret = secrets.token_urlsafe(TOKEN_BYTES)
    row = PortalSession(
        session_hash=hash_secret(secret),
        contact_id=contact_id,
        created_at=now,
        expires_at=now + timedelta(hours=settings.portal_session_hours),
    )
    session.add(row)
    session.flush()
    log.info("portal session %s started for contact %s", row.id, contact_id)
    return SignedIn(secret, row)


def get_session_contact(*, session: Session, secret: str | None, now: datetime) -> Contact | None:
    """The contact signed in with the session cookie ``secret``; None when it is unknown, revoked or expired."""
    if not secret or len(secret) > 100:
        return None
    row = session.scalar(select(PortalSession).where(PortalSession.session_hash == hash_secret(secret)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return session.get(Contact, row.contact_id)


def end_session(*, session: Session, secret: str, now: datetime) -> None:
    """Revoke the session behind ``secret`` (sign-out); nothing happens when it is unknown."""
    session.execute(
        update(PortalSession)
        .where(PortalSession.session_hash == hash_secret(secret), PortalSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


# --- CSRF -------------------------------------------------------------------------------------------------


def csrf_token(*, settings: Settings, binding: str) -> str:
    """The form token bound to a browser secret (the session cookie, else the CSRF cookie)."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"portal-csrf\x00" + binding.encode(), hashlib.sha256).hexdigest()


def csrf_token_matches(*, settings: Settings, token: str, bindings: list[str]) -> bool:
    """Whether ``token`` was made for one of the browser's secrets."""
    return any(
        hmac.compare_digest(token, csrf_token(settings=settings, binding=binding)) for binding in bindings if binding
    )


# --- Rate limits --------------------------------------------------------------------------------------------


def allow_attempt(
    *, client: redis.Redis, key: str, limit: int, window_seconds: int, namespace: str = "centrala"
) -> bool:
    """Count one attempt under ``key`` in a fixed window; False once more than ``limit`` were made.

    Keys carry a hash, never the address or IP itself, under ``namespace`` (the queue name, so that
    instances sharing a Redis count apart). Redis unavailable: the attempt is allowed (sign-in must not
    depend on the queue), and logged.
    """
    name = f"{namespace}:portal-rate:{hashlib.sha256(key.encode()).hexdigest()[:32]}"
    try:
        with client.pipeline() as pipe:
            # SET NX EX then INCR: the window starts with the first attempt (works on Redis < 7, no EXPIRE NX).
            pipe.set(name, 0, ex=window_seconds, nx=True)
            pipe.incr(name)
            _, count = pipe.execute()
    except (redis.RedisError, OSError) as error:
        log.warning("portal rate limit unavailable: %s", error)
        return True
    return int(count) <= limit
