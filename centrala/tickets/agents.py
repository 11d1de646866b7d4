"""Agents and their API tokens: a token is shown once and stored only as its sha256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from centrala.core.db import batch_cache
from centrala.core.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from centrala.tickets.contacts import MAX_NAME_LENGTH, normalise_email
from centrala.tickets.models import Agent, AgentQueue, AgentRole

# secrets.token_urlsafe(32) gives 43 characters; anything far longer is not one of ours and is not hashed.
MAX_TOKEN_LENGTH = 256


def hash_token(token: str) -> str:
    """The sha256 hex digest under which a token is stored.

    A plain hash is enough (no salt or slow KDF): the token is 256 random bits, not a guessable password.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random API token."""
    return secrets.token_urlsafe(32)


def create_agent(
    *, session: Session, email: str, name: str, role: AgentRole | str, now: datetime
) -> tuple[Agent, str]:
    """Create an active agent and return it with its API token, which is not stored and cannot be shown again.

    Raises:
        InvalidInputError: the e-mail address, name or role is malformed.
        ConflictError: an agent with this e-mail address exists.
    """
    address = normalise_email(email)
    name = " ".join(name.split())
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(f"the name is longer than {MAX_NAME_LENGTH} characters")
    try:
        role = AgentRole(role)
    except ValueError as error:
        choices = ", ".join(member.value for member in AgentRole)
        raise InvalidInputError(f"unknown role {role!r}; choose one of {choices}") from error
    if session.scalar(select(Agent.id).where(Agent.email == address)) is not None:
        raise ConflictError(f"an agent with the address {address} exists")
    token = new_token()
    agent = Agent(
        email=address, name=name, role=role, token_hash=hash_token(token), is_active=True, created_at=now
    )
    try:
        with session.begin_nested():
            session.add(agent)
    except IntegrityError as error:
        raise ConflictError(f"an agent with the address {address} exists") from error
    return agent, token


def get_agent_by_email_or_raise(*, session: Session, email: str) -> Agent:
    """The agent with this e-mail address (any case); raises NotFoundError."""
    agent = session.scalar(select(Agent).where(Agent.email == normalise_email(email)))
    if agent is None:
        raise NotFoundError("no agent has this e-mail address")
    return agent


def rotate_token(*, session: Session, agent: Agent) -> str:
    """Replace the agent's API token with a new one and return it; the old token stops working."""
    token = new_token()
    agent.token_hash = hash_token(token)
    session.flush()
    return token


def authenticate_token(*, session: Session, token: str) -> Agent:
    """The active agent holding ``token``; raises AuthenticationError otherwise.

    The lookup is by the token's hash, so the database compares digests, never the secret itself, and how
    long it takes says nothing about how much of a guessed token was right.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationError("invalid API token")
    agent = session.scalar(select(Agent).where(Agent.token_hash == hash_token(token)))
    if agent is None or not agent.is_active:
        raise AuthenticationError("invalid API token")
    return agent


def queue_ids_of(*, session: Session, agent: Agent) -> list[int] | None:
    """The queues whose tickets the agent works; None for supervisors and admins, who see every queue."""
    if agent.role in (AgentRole.SUPERVISOR, AgentRole.ADMIN):
        return None
    return list(session.scalars(select(AgentQueue.queue_id).where(AgentQueue.agent_id == agent.id)))


def agents_working_queue(*, session: Session, queue_id: int | None) -> list[int]:
    """The active agents who see the queue's tickets: its members and every supervisor and admin; for no queue,
    every active agent."""
    cache = batch_cache(session)
    key = ("agents_working_queue", queue_id)
    if cache is not None and key in cache:
        return list(cache[key])
    active = select(Agent.id).where(Agent.is_active.is_(True))
    if queue_id is None:
        agent_ids = list(session.scalars(active))
    else:
        members = select(AgentQueue.agent_id).where(AgentQueue.queue_id == queue_id)
        agent_ids = list(
            session.scalars(
                active.where(
                    or_(Agent.id.in_(members), Agent.role.in_((AgentRole.SUPERVISOR, AgentRole.ADMIN)))
                )
            )
        )
    if cache is not None:
        cache[key] = tuple(agent_ids)
    return agent_ids
