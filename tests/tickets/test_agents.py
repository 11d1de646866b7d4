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


def test_news_of_a_queue_goes_to_its_members_and_supervisors_only(session):
    from centrala.tickets.agents import agents_working_queue
    from centrala.tickets.models import AgentQueue, AgentRole
    from tests.factories import make_agent, make_queue

    hotline, legal = make_queue(session, name="Hotline"), make_queue(session, name="Legal")
    member, _ = make_agent(session, email="member@centrala.test")
    outsider, _ = make_agent(session, email="outsider@centrala.test")
    boss, _ = make_agent(session, email="boss@centrala.test", role=AgentRole.SUPERVISOR)
    gone, _ = make_agent(session, email="gone@centrala.test")
    gone.is_active = False
    session.add_all([AgentQueue(agent_id=member.id, queue_id=hotline.id),
                     AgentQueue(agent_id=outsider.id, queue_id=legal.id),
                     AgentQueue(agent_id=gone.id, queue_id=hotline.id)])
    session.flush()
    assert sorted(agents_working_queue(session=session, queue_id=hotline.id)) == sorted([member.id, boss.id])
    assert set(agents_working_queue(session=session, queue_id=None)) >= {member.id, outsider.id, boss.id}
    assert gone.id not in agents_working_queue(session=session, queue_id=None)
