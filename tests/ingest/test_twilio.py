"""Twilio webhooks through the web app, processed by the worker's service: signatures, the call flow's TwiML,
order-tolerant call state, caller matching, tickets and call-backs, the screen-pop and the caller log.

Requests are signed with the twilio library's own ``RequestValidator.compute_signature``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from centrala.core import clock
from centrala.core.settings import Settings
from centrala.ingest.calls import process_call_event
from centrala.ingest.models import CallEventRecord, InboundStatus
from centrala.tickets.models import (
    AgentAvailability,
    AgentQueue,
    BusinessCalendarRow,
    Channel,
    ClockState,
    Contact,
    Interaction,
    SlaClock,
    SlaMetric,
    SlaPolicy,
    Ticket,
)
from centrala.tickets.phone_models import Call, CallbackState, CallerMatch
from tests.factories import make_agent, make_contact, make_organization, make_queue, make_ticket
from tests.telephony import forms

TOKEN = "12345"
PUBLIC_URL = "https://help.example.com"
LINE = forms.OUR_NUMBER
# Monday 2026-03-02 10:00 in Prague: inside office hours.
OPEN_HOURS = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLOSED_HOURS = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)


@pytest.fixture()
def settings() -> Settings:
    return Settings(
        twilio_auth_token=TOKEN,
        public_url=PUBLIC_URL,
        twilio_backend="fake",
        default_region="CZ",
        phone_lines=[{"number": LINE, "queue": "Hotline", "language": "cs", "calendar": "Office"}],
    )


@pytest.fixture()
def now_is(monkeypatch) -> Iterator:
    current = {"now": OPEN_HOURS}
    monkeypatch.setattr(clock, "now", lambda: current["now"])
    yield lambda moment: current.update(now=moment)


@pytest.fixture()
def web(session, settings, redis_url, now_is) -> Iterator[TestClient]:
    from centrala.app import create_app
    from centrala.core.db import get_db, get_read_db

    def _request_session():
        session.commit()
        session.expire_all()
        try:
            yield session
        except Exception:
            session.rollback()
            raise

    application = create_app(settings)
    application.dependency_overrides[get_db] = _request_session
    application.dependency_overrides[get_read_db] = _request_session
    with TestClient(application) as test_client:
        yield test_client


@pytest.fixture()
def hotline(session):
    """The Hotline queue with an available agent, an office calendar (Prague, 8-17 on weekdays) and a
    default SLA policy of 60 business minutes to first response."""
    queue = make_queue(session, name="Hotline")
    agent, token = make_agent(session, name="Alena Svobodová")
    agent.availability = AgentAvailability.AVAILABLE
    session.add(AgentQueue(agent_id=agent.id, queue_id=queue.id))
    calendar = BusinessCalendarRow(
        name="Office",
        timezone="Europe/Prague",
        weekly_hours={str(day): [["08:00", "17:00"]] for day in range(5)},
        holidays_country="CZ",
        extra_holidays=[],
        updated_at=OPEN_HOURS,
    )
    session.add(calendar)
    session.flush()
    session.add(
        SlaPolicy(
            name="Default",
            is_default=True,
            calendar_id=calendar.id,
            targets={"default": {"first_response": 60, "next_response": 60, "resolution": 480}},
            warn_before_minutes=15,
            escalations=[],
            updated_at=OPEN_HOURS,
        )
    )
    session.flush()
    return {"queue": queue, "agent": agent, "token": token}


def sign(url: str, form: dict[str, str], token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, form)


def post(web: TestClient, kind: str, form: dict[str, str], query: str = "", **headers: str):
    path = f"/twilio/{kind}" + (f"?{query}" if query else "")
    signature = sign(PUBLIC_URL + path, form)
    return web.post(path, data=form, headers={"X-Twilio-Signature": signature, **headers})


def process_all(session, settings) -> list:
    """Run the worker's processing on every stored event, oldest first."""
    outcomes = []
    while True:
        ids = session.scalars(
            select(CallEventRecord.id)
            .where(CallEventRecord.status == InboundStatus.RECEIVED)
            .order_by(CallEventRecord.id)
        ).all()
        if not ids:
            return outcomes
        for event_id in ids:
            outcomes.append(
                process_call_event(session=session, event_id=event_id, now=clock.now(), settings=settings)
            )
            session.commit()


def leg(agent_id: int, status: str, sequence: int, seconds: int, **extra: str) -> dict[str, str]:
    return forms.leg_status(forms.ALICE_LEG, f"client:agent-{agent_id}", status, sequence, seconds, **extra)


def answered_by(agent_id: int) -> list[tuple[str, dict[str, str]]]:
    return [
        ("voice", forms.voice_request()),
        ("status", forms.call_status("in-progress", 1, 2)),
        ("status", leg(agent_id, "initiated", 0, 8)),
        ("status", leg(agent_id, "ringing", 1, 8)),
        ("status", leg(agent_id, "in-progress", 2, 20)),
        ("status", leg(agent_id, "completed", 3, 140, CallDuration="120")),
        (
            "dial-result",
            forms.dial_result(
                "completed", leg_sid=forms.ALICE_LEG, duration=120, parent_status="in-progress"
            ),
        ),
        ("status", forms.call_status("completed", 2, 141, CallDuration="141")),
    ]


def the_call(session) -> Call:
    session.expire_all()
    return session.scalars(select(Call).where(Call.call_sid == forms.CALL_SID)).one()


# --- signatures ------------------------------------------------------------------------------------------------


def test_published_test_vector_matches_the_validator():
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert sign(url, params, "12345") == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


@pytest.mark.parametrize(
    "tamper",
    ["missing", "forged", "tampered form", "wrong url", "wrong token", "other query"],
)
def test_unsigned_or_forged_requests_get_403_and_store_nothing(web, session, hotline, tamper):
    form = forms.voice_request()
    path = "/twilio/voice"
    headers = {"X-Twilio-Signature": sign(PUBLIC_URL + path, form)}
    if tamper == "missing":
        headers = {}
    elif tamper == "forged":
        headers["X-Twilio-Signature"] = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    elif tamper == "tampered form":
        form = {**form, "From": "+420777000111"}
    elif tamper == "wrong url":
        headers["X-Twilio-Signature"] = sign("http://testserver" + path, form)
    elif tamper == "wrong token":
        headers["X-Twilio-Signature"] = sign(PUBLIC_URL + path, form, token="54321")
    elif tamper == "other query":
        path += "?queue=Complaints"
    response = web.post(path, data=form, headers=headers)
    assert response.status_code == 403
    assert session.scalar(select(CallEventRecord.id)) is None


def test_a_signed_request_with_query_verifies_against_the_public_url(web, session, hotline):
    response = post(web, "status", forms.call_status("ringing", 0, 0), query="queue=Hotline")
    assert response.status_code == 200
    [record] = session.scalars(select(CallEventRecord)).all()
    assert record.context == {"queue": "Hotline"}


def test_an_unreadable_signed_form_is_kept_quarantined_and_the_caller_hears_something(web, session, hotline):
    form = forms.voice_request(CallStatus="exploded")
    response = post(web, "voice", form)
    assert response.status_code == 200
    assert "<Say" in response.text and "<Hangup" in response.text
    [record] = session.scalars(select(CallEventRecord)).all()
    assert record.status is InboundStatus.QUARANTINED
    assert "CallStatus" in record.reason
    assert record.form["CallStatus"] == "exploded"


# --- the call flow ----------------------------------------------------------------------------------------------


def test_a_call_rings_the_available_agents_of_the_lines_queue_in_its_language(web, session, hotline):
    absent, _ = make_agent(session, name="Away")
    session.add(AgentQueue(agent_id=absent.id, queue_id=hotline["queue"].id))  # offline: not rung
    other_queue_agent, _ = make_agent(session, name="Elsewhere")
    other_queue_agent.availability = AgentAvailability.AVAILABLE
    with_phone, _ = make_agent(session, name="On the road")
    with_phone.availability = AgentAvailability.AVAILABLE
    with_phone.phone_number = "+420777888999"
    session.add(AgentQueue(agent_id=with_phone.id, queue_id=hotline["queue"].id))
    session.flush()

    response = post(web, "voice", forms.voice_request())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    body = response.text
    assert 'language="cs-CZ"' in body
    assert "<Client" in body and f"agent-{hotline['agent'].id}" in body
    assert "+420777888999" in body
    assert f"agent-{absent.id}<" not in body and f"agent-{other_queue_agent.id}<" not in body
    assert "/twilio/dial-result?queue=Hotline" in body
    record = session.scalars(select(CallEventRecord)).one()
    assert record.context["rung_agent_ids"] == sorted([hotline["agent"].id, with_phone.id])
    assert record.call_sid == forms.CALL_SID


def test_outside_business_hours_the_caller_goes_straight_to_voicemail(web, session, hotline, now_is):
    now_is(CLOSED_HOURS)
    body = post(web, "voice", forms.voice_request()).text
    assert "<Dial" not in body
    assert "<Record" in body
    assert "zavřeno" in body or "Zavřeno" in body or "mimo" in body  # the Czech closed-hours text


def test_nobody_available_means_voicemail(web, session, hotline):
    hotline["agent"].availability = AgentAvailability.OFFLINE
    session.flush()
    body = post(web, "voice", forms.voice_request()).text
    assert "<Dial" not in body and "<Record" in body
    assert "/twilio/recording?step=action" in body


def test_a_menu_chooses_the_queue(web, session, hotline):
    complaints = make_queue(session, name="Complaints")
    complainer, _ = make_agent(session, name="Complaints desk")
    complainer.availability = AgentAvailability.AVAILABLE
    session.add(AgentQueue(agent_id=complainer.id, queue_id=complaints.id))
    session.flush()
    web.app.state.settings = Settings(
        twilio_auth_token=TOKEN,
        public_url=PUBLIC_URL,
        phone_lines=[
            {
                "number": LINE,
                "queue": "Hotline",
                "language": "en",
                "menu": {
                    "1": {"label": "Orders", "queue": "Hotline"},
                    "2": {"label": "Complaints", "queue": "Complaints"},
                },
            }
        ],
    )
    menu = post(web, "voice", forms.voice_request()).text
    assert "<Gather" in menu and "Complaints: press 2." in menu
    chosen = post(web, "voice", forms.voice_request(Digits="2"), query="menu=1").text
    assert f"agent-{complainer.id}" in chosen and f"agent-{hotline['agent'].id}<" not in chosen
    nothing = post(web, "voice", forms.voice_request(), query="menu=1").text
    assert f"agent-{hotline['agent'].id}" in nothing


def test_an_unanswered_dial_continues_to_voicemail_and_an_answered_one_hangs_up(web, session, hotline):
    missed = post(
        web,
        "dial-result",
        forms.dial_result("no-answer", leg_sid=None, duration=0, parent_status="in-progress"),
    )
    assert "<Record" in missed.text
    done = post(
        web,
        "dial-result",
        forms.dial_result("completed", leg_sid=forms.ALICE_LEG, duration=30, parent_status="in-progress"),
    )
    assert "<Hangup" in done.text and "<Record" not in done.text


def test_retried_and_duplicated_webhooks_are_stored_once(web, session, hotline):
    for _ in range(3):
        assert post(web, "status", forms.call_status("ringing", 0, 0)).status_code == 200
    assert len(session.scalars(select(CallEventRecord)).all()) == 1


# --- the call state -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_shuffled_and_repeated_callbacks_give_one_call_with_the_right_final_state(
    web, session, settings, hotline, seed
):
    events = answered_by(hotline["agent"].id)
    rng = random.Random(seed)
    delivered = events + rng.sample(events, k=4)
    rng.shuffle(delivered)
    for kind, form in delivered:
        assert post(web, kind, form).status_code == 200
        process_all(session, settings)

    call = the_call(session)
    assert (call.state, call.outcome) == ("completed", "answered")
    assert call.agent_id == hotline["agent"].id
    assert call.talk_seconds == 120
    assert call.ring_seconds == 12
    assert session.scalar(select(Call.id).where(Call.id != call.id)) is None
    interactions = session.scalars(select(Interaction).where(Interaction.channel == Channel.PHONE)).all()
    assert len(interactions) == 1


def test_a_late_recording_turns_a_missed_call_into_a_voicemail_on_the_same_ticket(
    web, session, settings, hotline
):
    for kind, form in forms.VOICEMAIL:
        if kind not in ("recording", "transcription"):
            post(web, kind, form)
    process_all(session, settings)
    call = the_call(session)
    assert call.outcome == "missed"
    ticket_id = call.ticket_id
    assert ticket_id is not None

    for kind, form in forms.VOICEMAIL:
        if kind in ("recording", "transcription"):
            post(web, kind, form)
    process_all(session, settings)

    call = the_call(session)
    assert call.outcome == "voicemail"
    assert call.ticket_id == ticket_id
    assert call.recording_duration == 24
    interaction = session.get(Interaction, call.interaction_id)
    assert "voicemail of 24 s" in interaction.text
    assert "please call me back about my order" in interaction.text
    assert len(session.scalars(select(Ticket)).all()) == 1


# --- caller matching ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["+420 601 123 456", "00420601123456", "601123456", "(601) 123-456"])
def test_every_way_of_writing_a_number_matches_the_same_contact(web, session, settings, hotline, written):
    token = hotline["token"]
    created = web.post(
        "/api/v1/contacts",
        json={"name": "Jan Novák", "emails": ["jan@example.cz"], "phones": ["+420 601 123 456"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]

    found = web.get(
        "/api/v1/contacts", params={"phone": written}, headers={"Authorization": f"Bearer {token}"}
    )
    assert [contact["id"] for contact in found.json()] == [contact_id]

    post(web, "voice", forms.voice_request(From=written, Caller=written))
    process_all(session, settings)
    call = the_call(session)
    assert (call.caller_match, call.contact_id) == (CallerMatch.SINGLE, contact_id)
    assert call.from_number == "+420601123456"


def test_a_number_shared_by_two_contacts_shows_both_and_picks_neither(web, session, settings, hotline):
    husband = make_contact(session, name="Jan Novák", phones=[forms.CALLER])
    wife = make_contact(session, name="Eva Nováková", phones=[forms.CALLER])
    post(web, "voice", forms.voice_request())
    process_all(session, settings)

    call = the_call(session)
    assert call.caller_match is CallerMatch.SHARED
    assert call.contact_id is None
    assert sorted(call.candidate_contact_ids) == sorted([husband.id, wife.id])
    pop = web.get(
        f"/api/v1/calls/{forms.CALL_SID}/screen-pop", headers={"Authorization": f"Bearer {hotline['token']}"}
    ).json()
    assert {card["name"] for card in pop["contacts"]} == {"Jan Novák", "Eva Nováková"}
    assert pop["match"] == "shared"
    assert any(s["kind"] == "confirm_caller" for s in pop["suggestions"])


def test_an_unknown_caller_gets_a_provisional_contact(web, session, settings, hotline):
    post(web, "voice", forms.voice_request())
    process_all(session, settings)
    call = the_call(session)
    contact = session.get(Contact, call.contact_id)
    assert call.caller_match is CallerMatch.PROVISIONAL
    assert contact.is_provisional
    assert [phone.number for phone in contact.phones] == [forms.CALLER]
    assert contact.name == "NOVAK JAN"  # Twilio's caller name lookup, when present


def test_a_withheld_number_creates_no_contact(web, session, settings, hotline):
    post(web, "voice", forms.voice_request(From="anonymous", Caller="anonymous"))
    process_all(session, settings)
    call = the_call(session)
    assert call.caller_match is CallerMatch.WITHHELD and call.contact_id is None
    assert session.scalar(select(Contact.id)) is None


# --- tickets and call-backs --------------------------------------------------------------------------------------


def test_a_missed_call_opens_a_ticket_with_a_call_back_due_by_the_sla(web, session, settings, hotline):
    contact = make_contact(session, name="Jan Novák", phones=[forms.CALLER])
    for kind, form in forms.MISSED:
        post(web, kind, form)
    process_all(session, settings)

    call = the_call(session)
    assert call.outcome == "missed"
    ticket = session.get(Ticket, call.ticket_id)
    assert ticket.contact_id == contact.id
    assert ticket.subject == "Missed call from Jan Novák"
    assert ticket.channel is Channel.PHONE and ticket.queue_id == hotline["queue"].id
    first_response = session.scalars(
        select(SlaClock).where(SlaClock.ticket_id == ticket.id, SlaClock.metric == SlaMetric.FIRST_RESPONSE)
    ).one()
    assert call.callback_state is CallbackState.PENDING
    assert call.callback_due_at == first_response.due_at
    assert call.callback_due_at == datetime(
        2026, 3, 2, 10, 0, tzinfo=UTC
    )  # 60 business minutes after 10:00 CET


def test_a_missed_call_with_an_open_ticket_in_the_queue_updates_it(web, session, settings, hotline):
    contact = make_contact(session, phones=[forms.CALLER])
    older = make_ticket(
        session, contact=contact, queue=hotline["queue"], updated_at=OPEN_HOURS - timedelta(days=2)
    )
    newer = make_ticket(
        session, contact=contact, queue=hotline["queue"], updated_at=OPEN_HOURS - timedelta(days=1)
    )
    make_ticket(session, contact=contact, queue=make_queue(session), updated_at=OPEN_HOURS)  # other queue
    for kind, form in forms.MISSED:
        post(web, kind, form)
    process_all(session, settings)
    assert the_call(session).ticket_id == newer.id != older.id


def test_an_answered_call_is_logged_on_the_open_ticket_and_counts_as_the_first_response(
    web, session, settings, hotline
):
    contact = make_contact(session, phones=[forms.CALLER])
    ticket = make_ticket(session, contact=contact, queue=hotline["queue"], created_at=OPEN_HOURS)
    from centrala.tickets.sla_clocks import start_clocks_for_new_ticket

    start_clocks_for_new_ticket(session=session, ticket=ticket, now=OPEN_HOURS)
    session.flush()
    for kind, form in answered_by(hotline["agent"].id):
        post(web, kind, form)
    process_all(session, settings)

    call = the_call(session)
    assert call.ticket_id == ticket.id
    interaction = session.get(Interaction, call.interaction_id)
    assert interaction.agent_id == hotline["agent"].id
    assert "answered by Alena Svobodová" in interaction.text and "talked 2 min 0 s" in interaction.text
    first = session.scalars(
        select(SlaClock).where(SlaClock.ticket_id == ticket.id, SlaClock.metric == SlaMetric.FIRST_RESPONSE)
    ).one()
    assert first.state is ClockState.MET


def test_an_answered_call_settles_the_callers_pending_call_backs(web, session, settings, hotline, now_is):
    make_contact(session, phones=[forms.CALLER])
    for kind, form in forms.MISSED:
        post(web, kind, form)
    process_all(session, settings)
    missed = the_call(session)
    assert missed.callback_state is CallbackState.PENDING

    now_is(OPEN_HOURS + timedelta(minutes=30))
    second = forms.sid("CA", "second call")
    for kind, form in answered_by(hotline["agent"].id):
        form = (
            {**form, "CallSid": second}
            if form.get("CallSid") == forms.CALL_SID
            else {**form, "ParentCallSid": second}
        )
        post(web, kind, form)
    process_all(session, settings)

    session.expire_all()
    missed = session.get(Call, missed.id)
    answered = session.scalars(select(Call).where(Call.call_sid == second)).one()
    assert missed.callback_state is CallbackState.DONE
    assert missed.callback_call_id == answered.id
    assert answered.ticket_id == missed.ticket_id  # the same open ticket


def test_the_agent_writes_the_call_note_and_outcome(web, session, settings, hotline):
    make_contact(session, phones=[forms.CALLER])
    for kind, form in answered_by(hotline["agent"].id):
        post(web, kind, form)
    process_all(session, settings)
    response = web.patch(
        f"/api/v1/calls/{forms.CALL_SID}",
        json={"note": "Wants a refund for order 4711", "agent_outcome": "refund promised"},
        headers={"Authorization": f"Bearer {hotline['token']}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["note"] == "Wants a refund for order 4711"
    interaction = session.get(Interaction, the_call(session).interaction_id)
    assert "Note: Wants a refund for order 4711" in interaction.text
    assert "Outcome: refund promised" in interaction.text


# --- screen-pop and caller log ------------------------------------------------------------------------------------


def test_the_screen_pop_shows_the_customer_their_tickets_sla_and_next_steps(
    web, session, settings, hotline, now_is
):
    organization = make_organization(session, name="Pekárna U Zlatého klasu")
    contact = make_contact(session, name="Jan Novák", phones=[forms.CALLER], organization=organization)
    complaint = make_ticket(
        session,
        contact=contact,
        subject="Complaint about delivery",
        queue=hotline["queue"],
        created_at=OPEN_HOURS - timedelta(minutes=20),
    )
    from centrala.tickets.sla_clocks import start_clocks_for_new_ticket

    start_clocks_for_new_ticket(session=session, ticket=complaint, now=OPEN_HOURS - timedelta(minutes=20))
    old_sid = forms.sid("CA", "yesterday")
    session.add(
        Call(
            call_sid=old_sid,
            direction="inbound",
            from_number=forms.CALLER,
            state="completed",
            outcome="voicemail",
            contact_id=contact.id,
            caller_match=CallerMatch.SINGLE,
            callback_state=CallbackState.PENDING,
            started_at=OPEN_HOURS - timedelta(days=1),
            created_at=OPEN_HOURS - timedelta(days=1),
            updated_at=OPEN_HOURS - timedelta(days=1),
        )
    )
    for index in range(7):
        session.add(
            Interaction(
                ticket=complaint,
                contact=contact,
                channel=Channel.EMAIL,
                direction="inbound",
                subject=f"mail {index}",
                text=f"text {index}",
                occurred_at=OPEN_HOURS - timedelta(hours=10 - index),
                created_at=OPEN_HOURS,
            )
        )
    session.flush()

    post(web, "voice", forms.voice_request())
    process_all(session, settings)
    pop = web.get(
        f"/api/v1/calls/{forms.CALL_SID}/screen-pop", headers={"Authorization": f"Bearer {hotline['token']}"}
    ).json()

    [card] = pop["contacts"]
    assert card["name"] == "Jan Novák"
    assert card["organization"]["name"] == "Pekárna U Zlatého klasu"
    [ticket_card] = card["open_tickets"]
    assert ticket_card["number"] == complaint.number
    assert {clock["metric"] for clock in ticket_card["sla"]} == {"first_response", "resolution"}
    assert [item["subject"] for item in card["recent_interactions"]] == [f"mail {i}" for i in (6, 5, 4, 3, 2)]
    texts = [s["text"] for s in pop["suggestions"]]
    assert (
        f"Open {complaint.number} (Complaint about delivery) breaches its first response in 40 min" in texts
    )
    assert "Voicemail from yesterday not called back yet" in texts


def test_the_caller_log_lists_calls_with_kpis(web, session, settings, hotline):
    make_contact(session, phones=[forms.CALLER])
    for kind, form in forms.MISSED:
        post(web, kind, form)
    second = forms.sid("CA", "answered one")
    for kind, form in answered_by(hotline["agent"].id):
        form = (
            {**form, "CallSid": second}
            if form.get("CallSid") == forms.CALL_SID
            else {**form, "ParentCallSid": second}
        )
        post(web, kind, form)
    process_all(session, settings)
    headers = {"Authorization": f"Bearer {hotline['token']}"}

    everything = web.get("/api/v1/calls", headers=headers).json()
    assert everything["total_inbound"] == 2
    assert everything["answered"] == 1 and everything["answer_rate"] == 0.5
    assert everything["missed_not_called_back"] == 0  # the answered call settled the missed one
    assert everything["average_wait_seconds"] is not None
    missed_only = web.get("/api/v1/calls", params={"outcome": "missed"}, headers=headers).json()
    assert [call["call_sid"] for call in missed_only["calls"]] == [forms.CALL_SID]
    by_agent = web.get("/api/v1/calls", params={"agent_id": hotline["agent"].id}, headers=headers).json()
    assert [call["call_sid"] for call in by_agent["calls"]] == [second]
    assert web.get("/api/v1/calls", params={"queue": "Nope"}, headers=headers).status_code == 404


# --- click-to-call ------------------------------------------------------------------------------------------------


def test_click_to_call_places_the_call_and_rings_the_agent_when_the_customer_answers(
    web, session, settings, hotline
):
    from centrala.ingest.phone_api import get_twilio_client

    contact = make_contact(session, name="Jan Novák", phones=[forms.CALLER])
    for kind, form in forms.MISSED:
        post(web, kind, form)
    process_all(session, settings)
    missed = the_call(session)

    fake = get_twilio_client(web.app.state.settings)
    response = web.post(
        "/api/v1/calls",
        json={"callback_for": missed.call_sid},
        headers={"Authorization": f"Bearer {hotline['token']}"},
    )
    assert response.status_code == 201, response.text
    placed = response.json()
    [request] = [r for r in fake.requests if r.method == "place_callback_call"]
    assert request.arguments["to"] == forms.CALLER and request.arguments["from_"] == LINE
    assert request.arguments["url"] == f"{PUBLIC_URL}/twilio/voice?agent={hotline['agent'].id}"
    assert placed["contact_id"] == contact.id and placed["ticket_id"] == missed.ticket_id

    sid = placed["call_sid"]
    picked_up = {**forms.callback_call_status("in-progress", 1, 5), "CallSid": sid}
    answer = post(web, "voice", picked_up, query=f"agent={hotline['agent'].id}")
    assert f"agent-{hotline['agent'].id}" in answer.text
    for status, seq, seconds, extra in (
        ("initiated", 0, 0, {}),
        ("completed", 2, 95, {"CallDuration": "90"}),
    ):
        post(web, "status", {**forms.callback_call_status(status, seq, seconds, **extra), "CallSid": sid})
    process_all(session, settings)

    session.expire_all()
    back = session.scalars(select(Call).where(Call.call_sid == sid)).one()
    assert (back.direction, back.outcome) == ("outbound", "answered")
    assert session.get(Call, missed.id).callback_state is CallbackState.DONE
    interaction = session.get(Interaction, back.interaction_id)
    assert interaction.ticket_id == missed.ticket_id and interaction.direction == "outbound"


def test_availability_and_queue_membership(web, session, hotline):
    _, admin_token = make_agent(session, role="admin")
    session.flush()
    me = {"Authorization": f"Bearer {hotline['token']}"}
    changed = web.put(
        "/api/v1/agents/me/availability",
        json={"availability": "busy", "phone_number": "777 888 999"},
        headers=me,
    ).json()
    assert changed["availability"] == "busy" and changed["phone_number"] == "+420777888999"
    refused = web.put(f"/api/v1/agents/{hotline['agent'].id}/queues", json={"queues": ["Sales"]}, headers=me)
    assert refused.status_code == 403
    done = web.put(
        f"/api/v1/agents/{hotline['agent'].id}/queues",
        json={"queues": ["Sales", "Hotline"]},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert done.json()["queues"] == ["Hotline", "Sales"]


def test_a_policy_can_say_that_answered_calls_are_not_a_response(web, session, settings, hotline):
    policy = session.scalars(select(SlaPolicy)).one()
    policy.calls_count_as_response = False
    contact = make_contact(session, phones=[forms.CALLER])
    ticket = make_ticket(session, contact=contact, queue=hotline["queue"], created_at=OPEN_HOURS)
    from centrala.tickets.sla_clocks import start_clocks_for_new_ticket

    start_clocks_for_new_ticket(session=session, ticket=ticket, now=OPEN_HOURS)
    session.flush()
    for kind, form in answered_by(hotline["agent"].id):
        post(web, kind, form)
    process_all(session, settings)

    assert the_call(session).ticket_id == ticket.id
    first = session.scalars(
        select(SlaClock).where(SlaClock.ticket_id == ticket.id, SlaClock.metric == SlaMetric.FIRST_RESPONSE)
    ).one()
    assert first.state is ClockState.RUNNING  # only a written answer meets it under this policy
