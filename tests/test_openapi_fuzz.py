"""schemathesis against /openapi.json, in process, with an admin agent's bearer token: every operation, a
bounded number of generated requests each; no request may get a server error (503 only for what is not
configured).

Response bodies are not checked against the schema: our 4xx answers are ``{"detail": "..."}`` (app.py maps
the error tree) while FastAPI documents 422 as its validation-error list.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.factories import make_agent, make_contact, make_ticket

EXAMPLES_PER_OPERATION = 25


@pytest.mark.faults
def test_api_operations_never_fail_on_generated_requests(app, session, capsys):
    from centrala.tickets.models import AgentRole

    contact = make_contact(session, emails=["jana@example.org"], phones=["+420601123456"])
    make_ticket(session, contact=contact)
    _agent, token = make_agent(session, email="admin@centrala.test", role=AgentRole.ADMIN)
    session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    calls = 0

    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(operation.as_strategy())
        def call(case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(headers=headers)
            # 503 is the honest answer of a feature the operator has not configured (calls without Twilio).
            assert response.status_code < 500 or response.status_code == 503, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
            )

        call()
    with capsys.disabled():
        print(f"\nschemathesis: {len(operations)} operations, {calls} requests")
    assert len(operations) >= 10 and calls >= len(operations)


def test_inbound_email_list_refuses_an_offset_beyond_any_row(client, session):
    # schemathesis: offset=9223372036854775808 overflowed SQLite's INTEGER, a 500.
    _agent, token = make_agent(session)
    response = client.get(
        "/api/v1/inbound-emails", params={"offset": 2**63}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 422


def test_calling_without_configured_telephony_answers_503_not_500(client, session):
    # schemathesis: POST /api/v1/calls raised ConfigurationError (no Twilio credentials), a 500.
    _agent, token = make_agent(session)
    response = client.post("/api/v1/calls", json={}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (422, 503), response.text
    response = client.post(
        "/api/v1/calls", json={"to": "+420601123456"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code != 500, response.text
