"""Agents' console sign-in: argon2id passwords, server-side sessions, and the CSRF token bound to a session.

The session cookie holds 256 random bits; the table keeps only their SHA-256, so a copy of the database
signs nobody in. A session lasts ``SESSION_HOURS`` from its last use, at most ``SESSION_MAX_DAYS`` in all,
and ends at sign-out or when the agent is deactivated.

Services take a session and ``now``; they flush, never commit.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from centrala.core.errors import InvalidInputError
from centrala.tickets.agents import hash_token
from centrala.tickets.contacts import normalise_email
from centrala.tickets.models import Agent, AgentSession

SESSION_HOURS = 12
SESSION_MAX_DAYS = 7
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()
# Verified when the address is unknown, so that a wrong address costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``.

    Raises:
        InvalidInputError: shorter than ``MIN_PASSWORD_LENGTH`` or absurdly long.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInputError("the password is too long")
    return _hasher.hash(password)


def set_password(*, agent: Agent, password: str) -> None:
    """Give the agent a console password; their open sessions stay (revoke them with ``revoke_all``)."""
    agent.password_hash = hash_password(password)


def check_credentials(*, session: Session, email: str, password: str) -> Agent | None:
    """The active agent with this address and password, or None; takes as long for an unknown address."""
    try:
        address = normalise_email(email)
    except InvalidInputError:
        address = ""
    agent = session.scalar(select(Agent).where(Agent.email == address)) if address else None
    stored = agent.password_hash if agent is not None and agent.is_active and agent.password_hash else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password[:MAX_PASSWORD_LENGTH])
    except (VerificationError, InvalidHashError):
        return None
    if stored is None or agent is None:
        return None
    if _hasher.check_needs_rehash(stored):
        agent.password_hash = _hasher.hash(password)
    return agent


@dataclass(frozen=True)
class SignedIn:
    agent: Agent
    record: AgentSession

    @property
    def csrf_token(self) -> str:
        return self.record.csrf_token


def start_session(*, session: Session, agent: Agent, now: datetime, user_agent: str = "") -> str:
    """Open a session for ``agent``; returns the cookie value (shown once, stored hashed)."""
    token = secrets.token_urlsafe(32)
    session.add(
        AgentSession(
            token_hash=hash_token(token),
            agent_id=agent.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=min(now + timedelta(hours=SESSION_HOURS), now + timedelta(days=SESSION_MAX_DAYS)),
            user_agent=user_agent[:200],
        )
    )
    session.flush()
    return token


def load_session(
    *, session: Session, token: str | None, now: datetime, touch: bool = True
) -> SignedIn | None:
    """The live session behind a cookie value, or None (unknown, expired, revoked, agent deactivated).

    With ``touch`` its expiry moves to ``SESSION_HOURS`` from now, capped at ``SESSION_MAX_DAYS`` after sign-in.
    """
    if not token or len(token) > 256:
        return None
    record = session.get(AgentSession, hash_token(token))
    if record is None or record.revoked_at is not None or record.expires_at <= now:
        return None
    agent = session.get(Agent, record.agent_id)
    if agent is None or not agent.is_active:
        return None
    if touch and now - record.last_seen_at > timedelta(minutes=1):
        record.last_seen_at = now
        record.expires_at = min(
            now + timedelta(hours=SESSION_HOURS), record.created_at + timedelta(days=SESSION_MAX_DAYS)
        )
    return SignedIn(agent=agent, record=record)


def revoke_session(*, session: Session, token: str | None, now: datetime) -> None:
    """End the session behind a cookie value (sign-out); an unknown one is ignored."""
    if token and len(token) <= 256:
        session.execute(
            update(AgentSession)
            .where(AgentSession.token_hash == hash_token(token), AgentSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )


def revoke_all(*, session: Session, agent: Agent, now: datetime) -> None:
    """End every session of ``agent`` (password change, deactivation)."""
    session.execute(
        update(AgentSession)
        .where(AgentSession.agent_id == agent.id, AgentSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def csrf_matches(signed_in: SignedIn, submitted: str | None) -> bool:
    """Whether a form's CSRF token is the session's."""
    return bool(submitted) and hmac.compare_digest(signed_in.csrf_token, submitted or "")
