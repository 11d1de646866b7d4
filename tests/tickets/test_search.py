"""Search: a ticket number, an address or a phone number finds its ticket or contact; words find messages by
full text (diacritics folded on SQLite), only within the agent's queues, and query syntax in the input is text."""

from __future__ import annotations

import pytest

from centrala.tickets.models import AgentQueue, AgentRole, Channel, Interaction
from tests.factories import NOW, make_agent, make_contact, make_queue, make_ticket


@pytest.fixture()
def world(session):
    mine, theirs = make_queue(session, name="Hotline"), make_queue(session, name="Legal")
    agent, token = make_agent(session, email="alena@centrala.test")
    session.add(AgentQueue(agent_id=agent.id, queue_id=mine.id))
    _, admin_token = make_agent(session, email="boss@centrala.test", role=AgentRole.ADMIN)
    jana = make_contact(session, name="Jana Nováková", emails=["jana@example.cz"], phones=["+420601123456"])
    washer = make_ticket(session, contact=jana, subject="Pračka netočí buben", queue=mine)
    lawsuit = make_ticket(session, contact=jana, subject="Soudní spor", queue=theirs)
    for ticket, text in ((washer, "Dobrý den, pračka přestala točit bubnem."), (lawsuit, "Pračka a žaloba.")):
        session.add(
            Interaction(
                ticket=ticket,
                contact=jana,
                channel=Channel.EMAIL,
                direction="inbound",
                subject=ticket.subject,
                text=text,
                occurred_at=NOW,
                created_at=NOW,
            )
        )
    session.flush()
    return {
        "agent": {"Authorization": f"Bearer {token}"},
        "admin": {"Authorization": f"Bearer {admin_token}"},
        "washer": washer,
        "lawsuit": lawsuit,
        "jana": jana,
    }


def find(client, headers, q):
    response = client.get("/api/v1/search", params={"q": q}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_ticket_number_an_address_and_a_number_in_any_form_find_their_record(client, world):
    assert [t["number"] for t in find(client, world["agent"], world["washer"].number)["tickets"]] == [
        world["washer"].number
    ]
    for q in ("jana@example.cz", "+420 601 123 456", "601123456", "nováková"):
        assert [c["id"] for c in find(client, world["agent"], q)["contacts"]] == [world["jana"].id], q


def test_words_find_messages_within_the_agents_queues(client, world):
    found = find(client, world["agent"], "pračka")["interactions"]
    assert [item["ticket_id"] for item in found] == [world["washer"].id]
    everything = find(client, world["admin"], "pračka")["interactions"]
    assert {item["ticket_id"] for item in everything} == {world["washer"].id, world["lawsuit"].id}
    assert find(client, world["agent"], "soudní spor")["tickets"] == []  # not her queue


def test_query_syntax_is_plain_text_and_bad_queries_are_clear(client, world):
    assert find(client, world["agent"], 'pračka" OR NEAR(') is not None
    assert find(client, world["agent"], "*")["interactions"] == []
    assert client.get("/api/v1/search", params={"q": "x" * 201}, headers=world["agent"]).status_code == 422


def test_words_without_diacritics_find_czech_words(client, world):
    assert [item["ticket_id"] for item in find(client, world["agent"], "pracka")["interactions"]] == [
        world["washer"].id
    ]
