"""Supervisors' reports: drawn as SVG, downloadable as CSV (formula-safe), refused to agents."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest

from centrala.core import clock
from centrala.tickets.agent_sessions import set_password
from centrala.tickets.models import AgentRole, Channel, ClockState, SlaClock, SlaMetric, SlaPolicy
from centrala.tickets.phone_models import Call, CallerMatch
from tests.console.test_web import PASSWORD
from tests.factories import make_agent, make_contact, make_queue, make_ticket


def sign_in_as(web, session, role: AgentRole) -> None:
    agent, _ = make_agent(session, email=f"{role.value}@centrala.test", name=f"The {role.value}", role=role)
    set_password(agent=agent, password=PASSWORD)
    session.flush()
    page = web.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    web.post("/console/login", data={"email": agent.email, "password": PASSWORD, "login_token": token})


@pytest.fixture()
def data(session):
    now = clock.now()
    policy = SlaPolicy(name="Standard", is_default=True, targets={}, escalations=[], updated_at=now)
    session.add(policy)
    queue = make_queue(session, name="Hotline")
    busy = make_contact(session, name='=HYPERLINK("http://evil")')  # a name that is a spreadsheet formula
    quiet = make_contact(session, name="Quiet Customer")
    for index in range(8):
        ticket = make_ticket(
            session, contact=busy, queue=queue, created_at=now - timedelta(days=1, minutes=index)
        )
        session.add(
            SlaClock(
                ticket=ticket,
                policy=policy,
                metric=SlaMetric.FIRST_RESPONSE,
                cycle=0,
                state=ClockState.MET,
                target_minutes=60,
                achieved_minutes=30 + index,
                started_at=now - timedelta(days=1),
                met_at=now - timedelta(hours=20),
                breached_at=(now - timedelta(hours=21)) if index == 0 else None,
            )
        )
    make_ticket(session, contact=quiet, channel=Channel.PHONE, created_at=now - timedelta(days=2))
    session.add(
        Call(
            call_sid="CA" + "3" * 32,
            direction="inbound",
            state="completed",
            outcome="missed",
            caller_match=CallerMatch.WITHHELD,
            wait_seconds=40,
            started_at=now - timedelta(days=1),
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()


def test_agents_cannot_see_reports(web, session, data):
    sign_in_as(web, session, AgentRole.AGENT)
    assert web.get("/console/reports").status_code == 403
    assert web.get("/console/reports/volume.csv").status_code == 403


def test_supervisors_see_charts_and_download_formula_safe_csv(web, session, data):
    sign_in_as(web, session, AgentRole.SUPERVISOR)
    page = web.get("/console/reports")
    assert page.status_code == 200
    # Every report with data is drawn; ratings and teams have none yet.
    assert page.text.count("<svg") == 7 and "Nothing in this period." in page.text
    assert (
        "HYPERLINK(&quot;http://evil&quot;)" in page.text or "HYPERLINK(&#34;http://evil&#34;)" in page.text
    )  # escaped in the SVG
    assert "SLA compliance by policy" in page.text

    sla = list(csv.reader(io.StringIO(web.get("/console/reports/sla.csv").text)))
    assert sla == [
        ["policy", "metric", "met", "in time", "late", "in time %"],
        ["Standard", "first_response", "8", "7", "1", "87.5"],
    ]
    pareto = list(csv.reader(io.StringIO(web.get("/console/reports/pareto.csv").text)))
    assert pareto[1][1].startswith("'=HYPERLINK")  # a formula becomes text
    assert [row[2] for row in pareto[1:]] == ["8"]  # 8 of 9 tickets already make 80 %
    calls = list(csv.reader(io.StringIO(web.get("/console/reports/calls.csv").text)))
    assert calls[1] == ["missed", "1", "40.0", ""]
    assert web.get("/console/reports/nothing.csv").status_code == 404


def test_a_supervisor_in_teams_sees_reports_of_their_teams_queues_and_times_per_team(web, session, data):
    from sqlalchemy import select

    from centrala.tickets.models import Agent, Queue, Team, TeamMember, TeamQueue

    sign_in_as(web, session, AgentRole.SUPERVISOR)
    lead = session.scalar(select(Agent).where(Agent.email == "supervisor@centrala.test"))
    hotline = session.scalar(select(Queue).where(Queue.name == "Hotline"))
    other = make_queue(session, name="Returns")
    returns_team, hotline_team = (
        Team(name="Returns team", created_at=clock.now()),
        Team(name="Hotline team", created_at=clock.now()),
    )
    session.add_all([returns_team, hotline_team])
    session.flush()
    session.add_all(
        [
            TeamMember(team_id=returns_team.id, agent_id=lead.id),
            TeamQueue(team_id=returns_team.id, queue_id=other.id),
            TeamQueue(team_id=hotline_team.id, queue_id=hotline.id),
        ]
    )
    session.flush()

    page = web.get("/console/reports").text
    assert "your teams' queues: Returns" in page
    assert list(csv.reader(io.StringIO(web.get("/console/reports/queues.csv").text))) == [
        ["queue", "tickets"]
    ]

    session.execute(TeamQueue.__table__.delete().where(TeamQueue.team_id == returns_team.id))
    session.add(TeamMember(team_id=hotline_team.id, agent_id=lead.id))
    session.flush()
    teams = list(csv.reader(io.StringIO(web.get("/console/reports/teams.csv").text)))
    assert teams[1][:3] == ["Hotline team", "8", "33.5"]  # 30..37 business minutes, median 33.5
    volume = list(csv.reader(io.StringIO(web.get("/console/reports/queues.csv").text)))
    assert volume[1:] == [["Hotline", "8"]]
    types = list(csv.reader(io.StringIO(web.get("/console/reports/types.csv").text)))
    assert types[0] == ["week", "type", "tickets"] and sum(int(row[2]) for row in types[1:]) == 8
