"""Agents and their API tokens."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from centrala.core.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from centrala.tickets.agents import (
    authenticate_token,
    create_agent,
    get_agent_by_email_or_raise,
    rotate_token,
)
from centrala.tickets.models import Agent, AgentRole
from tests.factories import NOW, make_agent


def test_create_agent_stores_only_the_hash_of_the_token(session):
    agent, token = create_agent(
        session=session, email=" Petr@Centrala.TEST ", name="Petr", role="admin", now=NOW
    )

    assert len(token) >= 43
    assert agent.email == "petr@centrala.test"
    assert agent.role is AgentRole.ADMIN
    assert agent.is_active
    assert agent.token_hash == hashlib.sha256(token.encode()).hexdigest()
    stored = session.scalars(select(Agent.token_hash)).all()
    assert token not in stored


def test_authenticate_token_finds_the_agent(session):
    agent, token = make_agent(session)
    make_agent(session)
    assert authenticate_token(session=session, token=token) is agent


@pytest.mark.parametrize("token", ["", "wrong", "x" * 10_000])
def test_authenticate_unknown_token_raises(session, token):
    make_agent(session)
    with pytest.raises(AuthenticationError):
        authenticate_token(session=session, token=token)


def test_authenticate_token_of_inactive_agent_raises(session):
    agent, token = make_agent(session)
    agent.is_active = False
    session.flush()
    with pytest.raises(AuthenticationError):
        authenticate_token(session=session, token=token)


def test_duplicate_agent_email_in_any_case_conflicts(session):
    make_agent(session, email="petr@centrala.test")
    with pytest.raises(ConflictError):
        create_agent(session=session, email="PETR@centrala.test", name="Other", role=AgentRole.AGENT, now=NOW)


@pytest.mark.parametrize(
    ("email", "role"),
    [("not-an-address", "agent"), ("x@centrala.test\r\nBcc: y@z", "agent"), ("a@b.test", "boss")],
)
def test_create_agent_refuses_malformed_input(session, email, role):
    with pytest.raises(InvalidInputError):
        create_agent(session=session, email=email, name="X", role=role, now=NOW)


def test_rotate_token_retires_the_old_token(session):
    agent, old = make_agent(session)
    new = rotate_token(session=session, agent=agent)

    assert new != old
    assert authenticate_token(session=session, token=new) is agent
    with pytest.raises(AuthenticationError):
        authenticate_token(session=session, token=old)


def test_get_agent_by_email(session):
    agent, _token = make_agent(session, email="petr@centrala.test")
    assert get_agent_by_email_or_raise(session=session, email="Petr@Centrala.test") is agent
    with pytest.raises(NotFoundError):
        get_agent_by_email_or_raise(session=session, email="nobody@centrala.test")
