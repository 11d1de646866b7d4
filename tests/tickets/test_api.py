"""The JSON API under /api/v1: authentication, tickets, replies, contacts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select

from centrala.tickets.models import (
    AgentQueue,
    Channel,
    ContactEmail,
    Direction,
    Interaction,
    Ticket,
    TicketStatus,
)
from tests.factories import (
    NOW,
    make_agent,
    make_contact,
    make_interaction,
    make_organization,
    make_queue,
    make_ticket,
)


@pytest.fixture()
def agent_and_token(session):
    return make_agent(session, email="petr@centrala.test", name="Petr Dvořák")


@pytest.fixture()
def agent(agent_and_token):
    return agent_and_token[0]


@pytest.fixture()
def auth(agent_and_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {agent_and_token[1]}"}


# --- Authentication -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/tickets", "/api/v1/tickets/1", "/api/v1/contacts", "/api/v1/contacts/1"]
)
def test_api_without_token_answers_401_with_bearer_challenge(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_post_without_token_answers_401_and_records_nothing(client, session):
    ticket = make_ticket(session)
    response = client.post(f"/api/v1/tickets/{ticket.id}/replies", json={"text": "Hi"})
    assert response.status_code == 401
    assert session.scalars(select(Interaction).where(Interaction.ticket_id == ticket.id)).all() == []


@pytest.mark.parametrize(
    "header", ["Bearer not-a-token", "Bearer ", "Basic dXNlcjpwYXNz", "bearer " + "x" * 5000]
)
def test_api_with_bad_credentials_answers_401(client, agent, header):
    response = client.get("/api/v1/tickets", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_token_of_deactivated_agent_answers_401(client, session, agent, auth):
    agent.is_active = False
    session.flush()
    assert client.get("/api/v1/tickets", headers=auth).status_code == 401


def test_valid_token_is_accepted_whatever_the_scheme_case(client, agent_and_token):
    _agent, token = agent_and_token
    response = client.get("/api/v1/tickets", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200


# --- Ticket list --------------------------------------------------------------------------------------------


def test_ticket_list_is_newest_updated_first_with_contact_and_count(client, session, auth, agent):
    contact = make_contact(session, name="Jana Nováková", emails=["jana@example.org", "jana@work.example"])
    queue = make_queue(session, name="Billing")
    session.add(AgentQueue(agent_id=agent.id, queue_id=queue.id))
    old = make_ticket(session, contact=contact, subject="Old", updated_at=NOW)
    newest = make_ticket(session, subject="Newest", updated_at=NOW + timedelta(hours=2))
    middle = make_ticket(
        session, contact=contact, subject="Middle", queue=queue, updated_at=NOW + timedelta(hours=1)
    )
    make_interaction(session, ticket=middle)
    make_interaction(session, ticket=middle)

    response = client.get("/api/v1/tickets", headers=auth)

    assert response.status_code == 200
    items = response.json()
    assert [item["id"] for item in items] == [newest.id, middle.id, old.id]
    first_middle = items[1]
    assert first_middle["number"] == f"T-{middle.id + 1000}"
    assert first_middle["subject"] == "Middle"
    assert first_middle["status"] == "new"
    assert first_middle["priority"] == "normal"
    assert first_middle["channel"] == "email"
    assert first_middle["contact"] == {"id": contact.id, "name": "Jana Nováková", "email": "jana@example.org"}
    assert first_middle["queue"] == {"id": queue.id, "name": "Billing"}
    assert first_middle["assignee_id"] is None
    assert first_middle["interaction_count"] == 2
    assert items[2]["interaction_count"] == 0


def test_ticket_list_filters_by_status_and_contact(client, session, auth):
    contact = make_contact(session)
    new = make_ticket(session, contact=contact, status=TicketStatus.NEW)
    pending = make_ticket(session, contact=contact, status=TicketStatus.PENDING)
    other_contacts_new = make_ticket(session, status=TicketStatus.NEW)
    make_ticket(session, status=TicketStatus.CLOSED)

    def ids(**params):
        response = client.get("/api/v1/tickets", params=params, headers=auth)
        assert response.status_code == 200
        return {item["id"] for item in response.json()}

    assert ids(status="new") == {new.id, other_contacts_new.id}
    assert ids(status=["new", "pending"], contact_id=contact.id) == {new.id, pending.id}
    assert ids(contact_id=contact.id) == {new.id, pending.id}
    assert client.get("/api/v1/tickets", params={"status": "bogus"}, headers=auth).status_code == 422


def test_ticket_list_paginates(client, session, auth):
    tickets = [make_ticket(session, updated_at=NOW + timedelta(minutes=i)) for i in range(5)]
    newest_first = [ticket.id for ticket in reversed(tickets)]

    page = client.get("/api/v1/tickets", params={"limit": 2, "offset": 2}, headers=auth).json()

    assert [item["id"] for item in page] == newest_first[2:4]
    assert client.get("/api/v1/tickets", params={"limit": 201}, headers=auth).status_code == 422
    assert client.get("/api/v1/tickets", params={"limit": 0}, headers=auth).status_code == 422
    assert client.get("/api/v1/tickets", params={"offset": -1}, headers=auth).status_code == 422


def test_ticket_list_queries_do_not_grow_with_the_number_of_tickets(client, session, engine, auth):
    def count_queries() -> int:
        statements: list[str] = []

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            assert client.get("/api/v1/tickets", headers=auth).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", record)
        return len([s for s in statements if not s.upper().startswith(("SAVEPOINT", "RELEASE"))])

    make_ticket(session, queue=make_queue(session))
    with_one = count_queries()
    for _ in range(4):
        make_ticket(session, queue=make_queue(session))
    assert count_queries() == with_one


# --- Ticket detail ------------------------------------------------------------------------------------------


def test_ticket_detail_by_id_and_by_number_lists_interactions_in_order(client, session, auth):
    ticket = make_ticket(session, subject="Broken router")
    later = make_interaction(session, ticket=ticket, occurred_at=NOW + timedelta(hours=1), text="second")
    first = make_interaction(
        session,
        ticket=ticket,
        occurred_at=NOW,
        text="first",
        html="<p>first</p>",
        external_id="<first@example.org>",
        author_address="jana@example.org",
        thread_reason="new-ticket",
        attachments=[("photo.jpg", "image/jpeg", 2048)],
    )
    same_time_as_later = make_interaction(
        session, ticket=ticket, occurred_at=NOW + timedelta(hours=1), text="third"
    )

    by_id = client.get(f"/api/v1/tickets/{ticket.id}", headers=auth)
    by_number = client.get(f"/api/v1/tickets/{ticket.number}", headers=auth)
    by_lower_number = client.get(f"/api/v1/tickets/{ticket.number.lower()}", headers=auth)

    assert by_id.status_code == by_number.status_code == by_lower_number.status_code == 200
    assert by_id.json() == by_number.json() == by_lower_number.json()
    detail = by_id.json()
    assert detail["number"] == ticket.number
    assert detail["subject"] == "Broken router"
    assert detail["interaction_count"] == 3
    assert [item["id"] for item in detail["interactions"]] == [first.id, later.id, same_time_as_later.id]
    shown = detail["interactions"][0]
    assert shown["channel"] == "email"
    assert shown["direction"] == "inbound"
    assert shown["text"] == "first"
    assert shown["html"] == "<p>first</p>"
    assert shown["external_id"] == "<first@example.org>"
    assert shown["author_name"] == ticket.contact.name
    assert shown["author_address"] == "jana@example.org"
    assert shown["thread_reason"] == "new-ticket"
    assert shown["occurred_at"].startswith("2025-03-03T08:30:00")
    assert shown["attachments"] == [
        {"id": first.attachments[0].id, "filename": "photo.jpg", "content_type": "image/jpeg", "size": 2048}
    ]


@pytest.mark.parametrize(
    "reference", ["999999", "T-999999", "T-1000", "0", "nonsense", "99999999999999999999"]
)
def test_missing_ticket_answers_404(client, auth, reference):
    response = client.get(f"/api/v1/tickets/{reference}", headers=auth)
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/contacts/2147483648", None),
        ("patch", "/api/v1/contacts/2147483648", {"name": "Jana"}),
        ("put", "/api/v1/agents/2147483648/queues", {"queues": []}),
        ("patch", "/api/v1/contacts/1", {"organization_id": 2147483648}),
    ],
)
def test_an_id_beyond_what_the_database_holds_answers_422_not_500(client, auth, agent, method, path, body):
    """PostgreSQL's keys are 32-bit: passed on, a larger id made the database refuse the query."""
    agent.role = "admin"
    response = client.request(method, path, headers=auth, json=body)
    assert response.status_code == 422, response.text
    assert "2147483647" in response.text


def test_every_integer_the_api_takes_is_bounded(client):
    """Path, query and body integers all carry a maximum, so that none reaches the database unchecked."""
    spec = client.get("/openapi.json").json()
    unbounded = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                unbounded += [
                    f"{method.upper()} {path} {parameter['name']}"
                    for schema in _alternatives(parameter.get("schema", {}))
                    if schema.get("type") == "integer" and "maximum" not in schema
                ]
    for name, schema in spec["components"]["schemas"].items():
        unbounded += [f"{name}.{field}" for field in _unbounded_fields(schema)]
    assert unbounded == []


def _alternatives(schema: dict) -> list[dict]:
    return [schema, *schema.get("anyOf", [])]


def _unbounded_fields(schema: dict) -> list[str]:
    """Integer properties without a maximum, in request models (the read models only describe our answers)."""
    fields = []
    for field, prop in schema.get("properties", {}).items():
        if schema.get("title", "").endswith(("Read", "Brief", "Changed")) or "readOnly" in prop:
            continue
        for option in _alternatives(prop):
            if option.get("type") == "integer" and "maximum" not in option:
                fields.append(field)
            items = option.get("items", {})
            if items.get("type") == "integer" and "maximum" not in items:
                fields.append(f"{field}[]")
    return fields


# --- Replies ------------------------------------------------------------------------------------------------


def test_reply_records_outbound_email_and_leaves_ticket_pending(client, session, agent, auth):
    ticket = make_ticket(session, subject="Broken router", status=TicketStatus.OPEN, updated_at=NOW)
    make_interaction(session, ticket=ticket, occurred_at=NOW)

    response = client.post(
        f"/api/v1/tickets/{ticket.number}/replies",
        json={"text": "Please restart it.", "html": "<p>Please restart it.</p>"},
        headers=auth,
    )

    assert response.status_code == 201
    body = response.json()
    assert body["ticket_id"] == ticket.id
    assert body["channel"] == "email"
    assert body["direction"] == "outbound"
    assert body["agent_id"] == agent.id
    assert body["author_name"] == "Petr Dvořák"
    assert body["author_address"] == "petr@centrala.test"
    assert body["subject"] == f"Re: Broken router [#{ticket.number}]"
    assert body["text"] == "Please restart it."
    assert body["html"] == "<p>Please restart it.</p>"
    assert body["attachments"] == []

    session.expire_all()
    stored = session.get(Interaction, body["id"])
    assert stored.direction is Direction.OUTBOUND
    assert stored.channel is Channel.EMAIL
    assert stored.contact_id == ticket.contact_id
    reloaded = session.get(Ticket, ticket.id)
    assert reloaded.status is TicketStatus.PENDING
    assert reloaded.updated_at > NOW
    detail = client.get(f"/api/v1/tickets/{ticket.id}", headers=auth).json()
    assert detail["interactions"][-1]["id"] == body["id"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (TicketStatus.NEW, TicketStatus.PENDING),
        (TicketStatus.OPEN, TicketStatus.PENDING),
        (TicketStatus.PENDING, TicketStatus.PENDING),
        (TicketStatus.RESOLVED, TicketStatus.RESOLVED),
        (TicketStatus.CLOSED, TicketStatus.CLOSED),
    ],
)
def test_reply_moves_only_new_and_open_tickets_to_pending(client, session, auth, before, after):
    ticket = make_ticket(session, status=before)
    response = client.post(f"/api/v1/tickets/{ticket.id}/replies", json={"text": "Done."}, headers=auth)
    assert response.status_code == 201
    session.expire_all()
    assert session.get(Ticket, ticket.id).status is after


@pytest.mark.parametrize(
    "body", [{"text": ""}, {"text": "   \n"}, {"text": "x" * 100_001}, {}, {"html": "<p>x</p>"}]
)
def test_reply_without_usable_text_answers_422_and_records_nothing(client, session, auth, body):
    ticket = make_ticket(session)
    response = client.post(f"/api/v1/tickets/{ticket.id}/replies", json=body, headers=auth)
    assert response.status_code == 422
    session.expire_all()
    assert session.scalars(select(Interaction).where(Interaction.ticket_id == ticket.id)).all() == []
    assert session.get(Ticket, ticket.id).status is TicketStatus.NEW


def test_reply_to_missing_ticket_answers_404(client, auth):
    response = client.post("/api/v1/tickets/T-999999/replies", json={"text": "Hi"}, headers=auth)
    assert response.status_code == 404


def test_reply_subject_keeps_the_tag_when_the_subject_is_long(client, session, auth):
    ticket = make_ticket(session, subject="x" * 500)
    body = client.post(f"/api/v1/tickets/{ticket.id}/replies", json={"text": "Hi"}, headers=auth).json()
    assert len(body["subject"]) == 500
    assert body["subject"].endswith(f" [#{ticket.number}]")


# --- Contact lookup -----------------------------------------------------------------------------------------


def test_contact_lookup_by_email_ignores_case_and_spaces(client, session, auth):
    jana = make_contact(session, name="Jana", emails=["jana@example.org"])
    make_contact(session, name="Other", emails=["other@example.org"])

    response = client.get("/api/v1/contacts", params={"email": "  Jana@EXAMPLE.org "}, headers=auth)

    assert response.status_code == 200
    assert [contact["id"] for contact in response.json()] == [jana.id]
    assert response.json()[0]["emails"] == ["jana@example.org"]


def test_contact_lookup_by_unknown_email_is_an_empty_list(client, auth):
    response = client.get("/api/v1/contacts", params={"email": "nobody@example.org"}, headers=auth)
    assert response.status_code == 200
    assert response.json() == []


def test_contact_lookup_by_national_number_finds_the_e164_number(client, auth):
    created = client.post(
        "/api/v1/contacts", json={"name": "Jana", "phones": ["+420 601 123 456"]}, headers=auth
    ).json()
    assert created["phones"] == ["+420601123456"]

    response = client.get("/api/v1/contacts", params={"phone": "601123456"}, headers=auth)

    assert response.status_code == 200
    assert [contact["id"] for contact in response.json()] == [created["id"]]


def test_contact_lookup_by_shared_number_returns_every_contact(client, session, auth):
    first = make_contact(session, name="Jana", phones=["+420601123456"])
    second = make_contact(session, name="Pavel", phones=["+420601123456", "+420777000111"])
    make_contact(session, name="Elsewhere", phones=["+420777000111"])

    response = client.get("/api/v1/contacts", params={"phone": "+420 601 123 456"}, headers=auth)

    assert response.status_code == 200
    assert [contact["id"] for contact in response.json()] == [first.id, second.id]


@pytest.mark.parametrize("params", [{"phone": "12"}, {"phone": "call me"}, {"email": "not-an-address"}])
def test_contact_lookup_with_malformed_value_answers_422(client, auth, params):
    response = client.get("/api/v1/contacts", params=params, headers=auth)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


def test_contact_lookup_by_both_email_and_phone_answers_422(client, auth):
    params = {"email": "jana@example.org", "phone": "601123456"}
    assert client.get("/api/v1/contacts", params=params, headers=auth).status_code == 422


def test_contacts_without_filter_are_listed_newest_first_in_pages(client, session, auth):
    contacts = [make_contact(session) for _ in range(3)]
    page = client.get("/api/v1/contacts", params={"limit": 2}, headers=auth).json()
    assert [contact["id"] for contact in page] == [contacts[2].id, contacts[1].id]


# --- Contact creation ---------------------------------------------------------------------------------------


def test_create_contact_normalises_addresses_and_numbers(client, session, auth):
    response = client.post(
        "/api/v1/contacts",
        json={
            "name": "  Jana   Nováková ",
            "emails": ["Jana@Example.ORG", "jana@example.org", "jana@work.example"],
            "phones": ["601 123 456", "+48 512 345 678"],
            "language": "cs",
        },
        headers=auth,
    )

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Jana Nováková"
    assert body["emails"] == ["jana@example.org", "jana@work.example"]
    assert body["phones"] == ["+420601123456", "+48512345678"]
    assert body["language"] == "cs"
    assert body["organization"] is None
    session.expire_all()
    owner = session.scalar(select(ContactEmail.contact_id).where(ContactEmail.address == "jana@work.example"))
    assert owner == body["id"]


def test_create_contact_with_address_of_another_contact_answers_409(client, session, auth):
    make_contact(session, emails=["jana@example.org"])
    response = client.post(
        "/api/v1/contacts",
        json={"name": "Impostor", "emails": ["new@example.org", "JANA@example.org"]},
        headers=auth,
    )
    assert response.status_code == 409
    assert "jana@example.org" in response.json()["detail"]
    session.expire_all()
    assert session.scalar(select(ContactEmail).where(ContactEmail.address == "new@example.org")) is None


@pytest.mark.parametrize(
    "body",
    [
        {"name": "X", "emails": ["not-an-address"]},
        {"name": "X", "emails": ["jana@example.org\r\nBcc: victim@example.org"]},
        {"name": "X", "emails": ["two@at@example.org"]},
        {"name": "X", "emails": ["alice@example.org)<bob@example.org>"]},
        {"name": "X", "phones": ["12"]},
        {"name": "X", "phones": ["anonymous"]},
        {"name": "X" * 201},
        {"name": "X", "emails": "jana@example.org"},
        {"name": "X", "unknown": 1},
    ],
)
def test_create_contact_with_malformed_input_answers_422(client, auth, body):
    response = client.post("/api/v1/contacts", json=body, headers=auth)
    assert response.status_code == 422


# --- Contact detail -----------------------------------------------------------------------------------------


def test_contact_detail_has_timeline_across_tickets_newest_first(client, session, auth):
    jana = make_contact(session, name="Jana", emails=["jana@example.org"], phones=["+420601123456"])
    first_ticket = make_ticket(session, contact=jana)
    second_ticket = make_ticket(session, contact=jana)
    oldest = make_interaction(session, ticket=first_ticket, occurred_at=NOW)
    newest = make_interaction(session, ticket=first_ticket, occurred_at=NOW + timedelta(days=2))
    middle = make_interaction(
        session, ticket=second_ticket, occurred_at=NOW + timedelta(days=1), channel=Channel.PHONE
    )
    without_ticket = make_interaction(session, contact=jana, occurred_at=NOW - timedelta(days=1))
    make_interaction(session, ticket=make_ticket(session), occurred_at=NOW + timedelta(days=3))

    response = client.get(f"/api/v1/contacts/{jana.id}", headers=auth)

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Jana"
    assert body["emails"] == ["jana@example.org"]
    assert body["phones"] == ["+420601123456"]
    timeline = body["timeline"]
    assert [entry["id"] for entry in timeline] == [newest.id, middle.id, oldest.id, without_ticket.id]
    assert [entry["ticket_number"] for entry in timeline] == [
        first_ticket.number,
        second_ticket.number,
        first_ticket.number,
        None,
    ]
    assert timeline[1]["channel"] == "phone"


def test_contact_detail_shows_organization(client, session, auth):
    organization = make_organization(session, name="Acme s.r.o.")
    contact = make_contact(session, organization=organization)
    body = client.get(f"/api/v1/contacts/{contact.id}", headers=auth).json()
    assert body["organization"] == {"id": organization.id, "name": "Acme s.r.o."}
    assert body["timeline"] == []


def test_missing_contact_answers_404(client, auth):
    assert client.get("/api/v1/contacts/999999", headers=auth).status_code == 404


@pytest.mark.parametrize("contact_id", ["0", "99999999999999999999", "nonsense"])
def test_an_id_no_contact_can_have_answers_422(client, auth, contact_id):
    assert client.get(f"/api/v1/contacts/{contact_id}", headers=auth).status_code == 422
