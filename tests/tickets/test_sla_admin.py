"""SLA policies and calendars through the API: admins only, validated, and a change moves the clocks already
running (a job scheduled for the old instant then does nothing). Segments choose policies; team leads hear
of their queue's breaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from centrala.core import clock
from centrala.core.settings import get_settings
from centrala.tickets.models import AgentRole, OutboundEmail, SlaClock, SlaMetric, SlaPolicy
from centrala.tickets.sla_clocks import check_clock, start_clocks_for_new_ticket
from tests.factories import make_agent, make_contact, make_queue, make_ticket

MONDAY_0900 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Prague

OFFICE = {
    "name": "Office",
    "timezone": "Europe/Prague",
    "weekly_hours": {str(day): [["09:00", "12:00"], ["13:00", "17:00"]] for day in range(5)},
    "holidays_country": "CZ",
}


@pytest.fixture()
def now_is(monkeypatch):
    current = {"now": MONDAY_0900}
    monkeypatch.setattr(clock, "now", lambda: current["now"])
    return lambda moment: current.update(now=moment)


@pytest.fixture()
def admin(session) -> dict[str, str]:
    _, token = make_agent(session, email="admin@centrala.test", role=AgentRole.ADMIN)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def agent(session) -> dict[str, str]:
    _, token = make_agent(session, email="agent@centrala.test")
    return {"Authorization": f"Bearer {token}"}


def policy_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": "Standard",
        "is_default": True,
        "targets": {"default": {"first_response": 120, "resolution": 960}},
        "warn_before_minutes": 15,
        "escalations": [{"on": "breach", "action": "notify_assignee"}],
    }
    body.update(overrides)
    return body


def test_only_admins_change_policies_and_calendars(client, agent):
    assert client.post("/api/v1/sla/calendars", json=OFFICE, headers=agent).status_code == 403
    assert client.post("/api/v1/sla/policies", json=policy_body(), headers=agent).status_code == 403
    assert client.get("/api/v1/sla/policies", headers=agent).status_code == 200


@pytest.mark.parametrize(
    "change, message",
    [
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"holidays_country": "XX"}, "XX"),
        ({"weekly_hours": {"0": [["9am", "17:00"]]}}, "9am"),
        ({"weekly_hours": {"0": [["09:00", "13:00"], ["12:00", "17:00"]]}}, "overlap"),
    ],
)
def test_a_bad_calendar_gets_a_clear_error(client, admin, change, message):
    response = client.post("/api/v1/sla/calendars", json={**OFFICE, **change}, headers=admin)
    assert response.status_code == 422
    assert message in response.text


@pytest.mark.parametrize(
    "change",
    [
        {"targets": {"sometimes": {"first_response": 10}}},
        {"targets": {"default": {"first_response": 0}}},
        {"targets": {"default": {"lunch": 10}}},
        {"escalations": [{"on": "breach", "action": "reassign"}]},
        {"escalations": [{"on": "breach", "action": "notify_address"}]},
        {"queue_id": 999999},
    ],
)
def test_a_bad_policy_gets_a_clear_error(client, admin, change):
    assert client.post("/api/v1/sla/policies", json=policy_body(**change), headers=admin).status_code == 422


def test_a_duplicate_name_is_a_conflict(client, admin):
    assert client.post("/api/v1/sla/calendars", json=OFFICE, headers=admin).status_code == 201
    assert client.post("/api/v1/sla/calendars", json=OFFICE, headers=admin).status_code == 409


def test_shortening_a_target_moves_open_clocks_and_the_old_job_does_nothing(client, session, admin, now_is):
    calendar = client.post("/api/v1/sla/calendars", json=OFFICE, headers=admin).json()
    created = client.post("/api/v1/sla/policies", json=policy_body(calendar_id=calendar["id"]), headers=admin)
    assert created.status_code == 201, created.text
    ticket = make_ticket(session, created_at=MONDAY_0900)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    session.flush()
    first = session.scalars(select(SlaClock).where(SlaClock.metric == SlaMetric.FIRST_RESPONSE)).one()
    old_due = first.due_at
    assert old_due == MONDAY_0900 + timedelta(hours=2)

    changed = client.put(
        f"/api/v1/sla/policies/{created.json()['id']}",
        json=policy_body(
            calendar_id=calendar["id"], targets={"default": {"first_response": 30, "resolution": 960}}
        ),
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["open_clocks_recomputed"] == 2
    session.expire_all()
    first = session.get(SlaClock, first.id)
    assert first.due_at == MONDAY_0900 + timedelta(minutes=30)

    # The check scheduled for the old instant finds a breach recorded at the new one, never a second one.
    now_is(MONDAY_0900 + timedelta(minutes=31))
    assert check_clock(session=session, clock_id=first.id, now=clock.now(), settings=get_settings()) == [
        "warning",
        "breach",
    ]
    now_is(old_due)
    assert check_clock(session=session, clock_id=first.id, now=clock.now(), settings=get_settings()) == []


def test_changing_a_calendar_counts_open_clocks_again(client, session, admin, now_is):
    calendar = client.post("/api/v1/sla/calendars", json=OFFICE, headers=admin).json()
    client.post("/api/v1/sla/policies", json=policy_body(calendar_id=calendar["id"]), headers=admin)
    ticket = make_ticket(session, created_at=MONDAY_0900)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    session.flush()

    later_start = {**OFFICE, "weekly_hours": {str(day): [["10:00", "18:00"]] for day in range(5)}}
    changed = client.put(f"/api/v1/sla/calendars/{calendar['id']}", json=later_start, headers=admin)
    assert changed.status_code == 200, changed.text
    session.expire_all()
    first = session.scalars(select(SlaClock).where(SlaClock.metric == SlaMetric.FIRST_RESPONSE)).one()
    assert first.due_at == MONDAY_0900 + timedelta(hours=3)  # opens at 10:00, two hours to 12:00


def test_a_segment_chooses_its_policy_and_a_new_segment_moves_the_clocks(client, session, admin, now_is):
    client.post("/api/v1/sla/policies", json=policy_body(), headers=admin)
    vip = client.post(
        "/api/v1/sla/policies",
        json=policy_body(
            name="VIP",
            is_default=False,
            precedence=10,
            segment="VIP",
            targets={"default": {"first_response": 15}},
        ),
        headers=admin,
    ).json()
    assert vip["segment"] == "vip"
    regular = make_contact(session)
    ticket = make_ticket(session, contact=regular, created_at=MONDAY_0900)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    session.flush()
    first = session.scalars(select(SlaClock).where(SlaClock.metric == SlaMetric.FIRST_RESPONSE)).one()
    assert first.target_minutes == 120

    response = client.patch(f"/api/v1/contacts/{regular.id}", json={"segment": "vip"}, headers=admin)
    assert response.status_code == 200 and response.json()["segment"] == "vip"
    session.expire_all()
    first = session.get(SlaClock, first.id)
    assert first.policy_id == vip["id"] and first.due_at == MONDAY_0900 + timedelta(minutes=15)
    assert (
        client.patch(f"/api/v1/contacts/{regular.id}", json={"segment": "v i p"}, headers=admin).status_code
        == 422
    )


def test_a_breach_tells_the_queues_team_lead(client, session, admin, now_is):
    lead, _ = make_agent(session, email="lead@centrala.test", name="Team Lead")
    queue = make_queue(session, name="Complaints")
    queue.lead_agent_id = lead.id
    session.flush()
    client.post(
        "/api/v1/sla/policies",
        json=policy_body(
            targets={"default": {"first_response": 30}},
            escalations=[{"on": "breach", "action": "notify_team_lead"}],
        ),
        headers=admin,
    )
    ticket = make_ticket(session, queue=queue, created_at=MONDAY_0900)
    start_clocks_for_new_ticket(session=session, ticket=ticket, now=MONDAY_0900)
    session.flush()
    first = session.scalars(select(SlaClock).where(SlaClock.metric == SlaMetric.FIRST_RESPONSE)).one()
    now_is(MONDAY_0900 + timedelta(minutes=31))
    assert "breach" in check_clock(
        session=session, clock_id=first.id, now=clock.now(), settings=get_settings()
    )
    [notice] = session.scalars(select(OutboundEmail)).all()
    assert notice.recipient == "lead@centrala.test"
    assert session.scalars(select(SlaPolicy)).one().escalations == [
        {"on": "breach", "action": "notify_team_lead"}
    ]


def test_a_contact_becomes_their_organisations_manager_through_the_api(client, session, admin):
    from tests.factories import make_organization

    organization = make_organization(session, name="Pekárna s.r.o.")
    created = client.post(
        "/api/v1/contacts",
        json={"name": "Eva", "emails": ["eva@pekarna.example"], "is_org_manager": True},
        headers=admin,
    ).json()
    assert created["is_org_manager"] is True
    moved = client.patch(
        f"/api/v1/contacts/{created['id']}",
        json={"organization_id": organization.id, "is_org_manager": False},
        headers=admin,
    )
    assert moved.status_code == 200
    assert (
        moved.json()["organization"]["name"] == "Pekárna s.r.o." and moved.json()["is_org_manager"] is False
    )
    assert (
        client.patch(
            f"/api/v1/contacts/{created['id']}", json={"organization_id": 999999}, headers=admin
        ).status_code
        == 422
    )
