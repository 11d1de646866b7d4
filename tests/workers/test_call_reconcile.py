"""A call whose final status callback never arrived is looked up in Twilio's REST API by the scheduler's sweep,
so a missed call still becomes a ticket with a call-back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import select

from centrala.core import clock
from centrala.core.db import get_sessionmaker
from centrala.core.queue import get_queue
from centrala.core.settings import get_settings
from centrala.ingest.models import CallEventRecord
from centrala.telephony.client import FakeTwilioClient
from centrala.telephony.events import call_key, event_key, parse_call_event
from centrala.tickets.phone_models import Call, CallbackState
from centrala.workers import jobs
from tests.factories import make_contact
from tests.telephony import forms

STARTED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture()
def db(committed_db, redis_url):
    queue = get_queue()
    queue.empty()
    for job_id in queue.scheduled_job_registry.get_job_ids():
        queue.scheduled_job_registry.remove(job_id)
    yield get_sessionmaker()
    queue.empty()


def store(db, kind: str, form: dict[str, str], now: datetime) -> int:
    event = parse_call_event(kind, form, default_region="CZ")
    with db() as session:
        record = CallEventRecord(
            event_key=event_key(event),
            call_sid=call_key(event),
            kind=kind,
            form=form,
            context={},
            received_at=now,
            queued_at=now,
        )
        session.add(record)
        session.commit()
        return record.id


def test_a_lost_final_callback_is_recovered_from_twilio(db, monkeypatch):
    current = {"now": STARTED}
    monkeypatch.setattr(clock, "now", lambda: current["now"])
    fake = FakeTwilioClient()
    monkeypatch.setattr(jobs, "twilio_client", lambda: fake)
    settings = get_settings()
    with db() as session:
        contact = make_contact(session, name="Jan Novák", phones=[forms.CALLER])
        session.commit()
        contact_id = contact.id

    for kind, form in [("voice", forms.voice_request()), ("status", forms.call_status("in-progress", 1, 1))]:
        jobs.process_call_event(store(db, kind, form, STARTED))
    # The "completed" callback is lost. Half an hour later nothing happened yet; Twilio knows how it ended.
    fake.calls[forms.CALL_SID] = {
        "CallSid": forms.CALL_SID,
        "AccountSid": forms.ACCOUNT_SID,
        "CallStatus": "completed",
        "Direction": "inbound",
        "From": forms.CALLER,
        "To": forms.OUR_NUMBER,
        "CallDuration": "30",
    }
    current["now"] = STARTED + timedelta(minutes=settings.call_reconcile_after_minutes - 1)
    jobs.sweep_call_events()
    assert get_queue().job_ids == []

    current["now"] = STARTED + timedelta(minutes=settings.call_reconcile_after_minutes + 1)
    jobs.sweep_call_events()
    queue = get_queue()
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)

    with db() as session:
        call = session.scalars(select(Call).where(Call.call_sid == forms.CALL_SID)).one()
        assert (call.state, call.outcome) == ("completed", "missed")
        assert call.contact_id == contact_id and call.ticket_id is not None
        assert call.callback_state is CallbackState.PENDING
    assert [r.method for r in fake.requests] == ["fetch_call"]

    # Twilio not knowing the call (or a call still going on) only postpones the next question.
    other = forms.sid("CA", "unknown to twilio")
    jobs.process_call_event(store(db, "voice", {**forms.voice_request(), "CallSid": other}, current["now"]))
    current["now"] += timedelta(minutes=settings.call_reconcile_after_minutes + 1)
    jobs.sweep_call_events()
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)
    with db() as session:
        unknown = session.scalars(select(Call).where(Call.call_sid == other)).one()
        assert unknown.outcome is None and unknown.updated_at == current["now"]
