"""Quarantined messages are listed with their reasons, downloadable raw, and replayable."""

from datetime import UTC, datetime

import pytest

from centrala.core.blobs import BlobStore
from centrala.core.settings import get_settings
from centrala.ingest.ledger import record_inbound_email
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.ingest.process import process_inbound_email
from tests.factories import make_agent
from tests.support.mails import make_mail

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
NO_SENDER = b"To: support@localhost\r\nSubject: who am I\r\n\r\nbody\r\n"


@pytest.fixture()
def auth(session):
    _agent, token = make_agent(session, email="eva@centrala.test")
    return {"Authorization": f"Bearer {token}"}


def _ingest(session, blobs, raw):
    recorded = record_inbound_email(
        session=session,
        raw=raw,
        mailbox="support@localhost",
        mail_from="",
        rcpt_tos=["support@localhost"],
        now=NOW,
        blobs=blobs,
    )
    process_inbound_email(
        session=session, inbound_id=recorded.id, now=NOW, blobs=blobs, settings=get_settings()
    )
    session.flush()
    return session.get(InboundEmail, recorded.id)


def test_quarantine_is_listed_with_reason_and_raw_bytes_are_downloadable(client, session, auth):
    blobs = BlobStore(get_settings().blob_dir)
    _ingest(session, blobs, make_mail())
    bad = _ingest(session, blobs, NO_SENDER)

    listed = client.get("/api/v1/inbound-emails", params={"status": "quarantined"}, headers=auth).json()
    assert [(row["id"], row["status"]) for row in listed] == [(bad.id, "quarantined")]
    assert "sender" in listed[0]["reason"]

    raw = client.get(f"/api/v1/inbound-emails/{bad.id}/raw", headers=auth)
    assert raw.content == NO_SENDER
    assert raw.headers["content-disposition"] == f'attachment; filename="inbound-{bad.id}.eml"'


def test_replay_hands_a_quarantined_message_back_to_processing(client, session, auth, blobs):
    bad = _ingest(session, blobs, NO_SENDER)
    response = client.post(f"/api/v1/inbound-emails/{bad.id}/replay", headers=auth)
    assert response.status_code == 202
    assert response.json()["status"] == "received"
    session.refresh(bad)
    assert bad.status == InboundStatus.RECEIVED and bad.reason is None


def test_replay_of_a_processed_message_is_refused(client, session, auth, blobs):
    good = _ingest(session, blobs, make_mail())
    assert client.post(f"/api/v1/inbound-emails/{good.id}/replay", headers=auth).status_code == 409
