"""Fault: the database is locked for 10 s while Twilio's webhooks arrive. Every webhook still gets its TwiML at
once (no wait for the lock), its event is kept in the spool, and once the lock is gone every event is stored
exactly once."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from twilio.request_validator import RequestValidator

from centrala.core.db import get_sessionmaker, is_postgresql
from centrala.core.settings import Settings
from centrala.ingest.models import CallEventRecord
from centrala.ingest.twilio_spool import spooled
from tests.support.fault_report import report
from tests.telephony import forms

TOKEN = "spool-test-token"
PUBLIC_URL = "https://help.example.com"
LOCK_SECONDS = 10.0
CALLS = 12


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(
        twilio_auth_token=TOKEN,
        public_url=PUBLIC_URL,
        twilio_backend="fake",
        default_region="CZ",
        var_dir=tmp_path / "var",
    )


def _post(client: TestClient, path: str, form: dict[str, str]):
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + path, form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature})


def _hold_the_lock(engine, locked: threading.Event, release: threading.Event) -> None:
    """Another writer holds the database (SQLite: the write lock; PostgreSQL: the events table) until told."""
    with engine.connect() as connection:
        if is_postgresql(engine):
            connection.exec_driver_sql("BEGIN")
            connection.exec_driver_sql("LOCK TABLE call_event IN ACCESS EXCLUSIVE MODE")
        else:
            connection.connection.driver_connection.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(LOCK_SECONDS + 30)
        if is_postgresql(engine):
            connection.exec_driver_sql("ROLLBACK")
        else:
            connection.connection.driver_connection.execute("ROLLBACK")


def test_webhooks_are_answered_at_once_while_the_database_is_locked_and_stored_once_after(
    committed_db, redis_url, settings
):
    from centrala.app import create_app

    sent = [
        ("/twilio/voice", forms.voice_request(CallSid=forms.sid("CA", f"locked-{n}"))) for n in range(CALLS)
    ]
    sent += [
        (
            "/twilio/status",
            forms.inbound_call(
                call_sid=forms.sid("CA", f"locked-{n}"),
                CallStatus="ringing",
                SequenceNumber="0",
                Timestamp=forms.at(n),
            ),
        )
        for n in range(CALLS)
    ]
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_the_lock, args=(committed_db, locked, release))
    holder.start()
    assert locked.wait(10)
    latencies = []
    try:
        with TestClient(create_app(settings)) as client:
            started_lock = time.monotonic()
            for path, form in sent:
                began = time.monotonic()
                response = _post(client, path, form)
                latencies.append(time.monotonic() - began)
                assert response.status_code == 200, response.text
                assert response.text.startswith("<?xml")
                if path == "/twilio/voice":
                    assert "<Record" in response.text  # nobody to ring: straight to voicemail
            waiting = len(spooled(settings))
            # The lock is held for its full 10 s while the answers are long given.
            time.sleep(max(0.0, LOCK_SECONDS - (time.monotonic() - started_lock)))
            release.set()
            holder.join(30)
            deadline = time.monotonic() + 30
            while spooled(settings) and time.monotonic() < deadline:
                time.sleep(0.2)
            # Twilio retries a status callback it thinks failed: the same event again stays one row.
            assert _post(client, *sent[-1]).status_code == 200
    finally:
        release.set()
        holder.join(30)

    with get_sessionmaker()() as session:
        stored = session.scalar(select(func.count()).select_from(CallEventRecord))
        distinct = session.scalar(select(func.count(func.distinct(CallEventRecord.event_key))))
        session.execute(text("SELECT 1"))
    report(
        "twilio_database_locked_10_s",
        sent=len(sent) + 1,
        answered_200=len(latencies) + 1,
        spooled_while_locked=waiting,
        stored=stored,
        duplicates=stored - distinct,
        slowest_answer_ms=round(max(latencies) * 1000),
    )
    assert waiting == len(sent)
    assert spooled(settings) == []
    assert stored == distinct == len(sent)
    # No answer waited out the lock: a write that waits gives up after the usual lock timeout (5 s) with an
    # error, and the lock was held for 10 s.
    assert max(latencies) < 5.0
