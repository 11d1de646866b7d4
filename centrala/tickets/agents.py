"""Agents and their API tokens: a token is shown once and stored only as its sha256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import ColumnElement, CompoundSelect, func, or_, select, true, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from centrala.core.db import autoflush_only_for, batch_cache
from centrala.core.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from centrala.core.text import single_line
from centrala.tickets.contacts import MAX_NAME_LENGTH, normalise_email
from centrala.tickets.models import Agent, AgentQueue, AgentRole, ApiToken, TeamMember, TeamQueue, Ticket

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
    name = single_line(name)
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


def authenticate_token(*, session: Session, token: str, now: datetime | None = None) -> Agent:
    """The active agent holding ``token`` (a named token made in the console, or the one printed when the agent
    was created); raises AuthenticationError otherwise.

    The lookup is by the token's hash, so the database compares digests, never the secret itself, and how
    long it takes says nothing about how much of a guessed token was right.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationError("invalid API token")
    digest = hash_token(token)
    named = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None)))
    if named is not None:
        agent = named.agent
        # Recorded at most once a minute: a busy integration should not write on every request.
        if now is not None and (named.last_used_at is None or (now - named.last_used_at).total_seconds() > 60):
            named.last_used_at = now
    else:
        agent = session.scalar(select(Agent).where(Agent.token_hash == digest))
    if agent is None or not agent.is_active:
        raise AuthenticationError("invalid API token")
    return agent


MAX_TOKEN_NAME = 100


def create_api_token(*, session: Session, agent: Agent, name: str, now: datetime) -> tuple[ApiToken, str]:
    """A new named token for ``agent``; the secret is returned once and stored only as its hash.

    Raises:
        InvalidInputError: the name is blank or too long.
    """
    name = single_line(name)
    if not name:
        raise InvalidInputError("give the token a name that says where it is used, e.g. 'CRM sync'")
    if len(name) > MAX_TOKEN_NAME:
        raise InvalidInputError(f"a token's name is at most {MAX_TOKEN_NAME} characters")
    secret = new_token()
    row = ApiToken(agent_id=agent.id, name=name, token_hash=hash_token(secret), created_at=now)
    session.add(row)
    session.flush()
    return row, secret


def revoke_api_token(*, session: Session, token: ApiToken, now: datetime) -> None:
    """Stop ``token`` working from now on (the row stays, as a record of it)."""
    if token.revoked_at is None:
        token.revoked_at = now
        session.flush()


def queue_ids_of(*, session: Session, agent: Agent) -> list[int] | None:
    """The queues whose tickets the agent works: those of their teams and those they answer calls for; None for
    supervisors and admins, who see every queue."""
    if agent.role in (AgentRole.SUPERVISOR, AgentRole.ADMIN):
        return None
    return sorted(set(session.scalars(_queues_of_agent(agent.id))))


def team_queue_ids_of(*, session: Session, agent: Agent) -> list[int] | None:
    """The queues of the agent's teams, for a supervisor's reports; None (every queue) for admins and for a
    supervisor in no team."""
    if agent.role is AgentRole.ADMIN:
        return None
    queues = sorted(set(session.scalars(_queues_of_agent(agent.id))))
    if agent.role is AgentRole.SUPERVISOR and not queues:
        return None
    return queues


def _queues_of_agent(agent_id: int) -> CompoundSelect:
    by_team = select(TeamQueue.queue_id).join(TeamMember, TeamMember.team_id == TeamQueue.team_id).where(
        TeamMember.agent_id == agent_id
    )
    direct = select(AgentQueue.queue_id).where(AgentQueue.agent_id == agent_id)
    return union(by_team, direct)


def may_work_ticket(*, session: Session, agent: Agent, ticket: Ticket) -> bool:
    """Whether ``agent`` may open and work ``ticket``: supervisors and admins always; agents when it is in one
    of their queues, assigned to them, or in no queue yet (someone has to triage it)."""
    return may_work(agent=agent, queues=queue_ids_of(session=session, agent=agent), ticket=ticket)


def may_work(*, agent: Agent, queues: list[int] | None, ticket: Ticket) -> bool:
    """``may_work_ticket`` for an agent whose ``queue_ids_of`` is known (checking many tickets at once)."""
    return queues is None or ticket.queue_id is None or ticket.queue_id in queues or ticket.assignee_id == agent.id


def workable_tickets(*, session: Session, agent: Agent) -> ColumnElement[bool]:
    """A condition on ``Ticket`` matching exactly the tickets ``may_work_ticket`` allows."""
    queues = queue_ids_of(session=session, agent=agent)
    if queues is None:
        return true()
    # In one of the agent's queues (0: in none yet) or theirs. Written so that it only filters: were each branch
    # indexable, SQLite would gather every ticket of the agent's queues (often most of the table) and sort them;
    # this way a newest-first list is read along its index and a page takes a few hundred rows.
    return or_(func.coalesce(Ticket.queue_id, 0).in_([0, *queues]), Ticket.assignee_id == agent.id)


def agents_working_queue(*, session: Session, queue_id: int | None) -> list[int]:
    """The active agents who see the queue's tickets: its members (directly or by team) and every supervisor
    and admin; for no queue, every active agent. What the session has pending is written for the lookup only
    when it is an agent or a membership: an inbound drain announces each message it records, and writes its
    batch once, at the end."""
    cache = batch_cache(session)
    key = ("agents_working_queue", queue_id)
    if cache is not None and key in cache:
        return list(cache[key])
    with autoflush_only_for(session, Agent, AgentQueue, TeamMember, TeamQueue):
        active = select(Agent.id).where(Agent.is_active.is_(True))
        if queue_id is None:
            agent_ids = list(session.scalars(active))
        else:
            members = union(
                select(AgentQueue.agent_id).where(AgentQueue.queue_id == queue_id),
                select(TeamMember.agent_id)
                .join(TeamQueue, TeamQueue.team_id == TeamMember.team_id)
                .where(TeamQueue.queue_id == queue_id),
            )
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
