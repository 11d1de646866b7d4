"""Retention of raw mail: the bytes of processed messages go after the period; the ledger row, the interaction
and anything still to be replayed stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from centrala.core.blobs import BlobStore
from centrala.core.db import session_scope
from centrala.core.settings import get_settings
from centrala.ingest.ledger import INLINE_RAW_LIMIT, load_raw, purge_raw_mail, record_inbound_email
from centrala.ingest.models import InboundEmail, InboundStatus
from centrala.ingest.process import process_inbound_email
from centrala.tickets.models import Interaction, Ticket, TicketStatus
from tests.factories import make_agent
from tests.support.mails import make_mail

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PERIOD = timedelta(days=90)
NO_SENDER = b"To: support@localhost\r\nSubject: who am I\r\n\r\nbody\r\n"


def _ingest(session, blobs, raw, *, at):
    recorded = record_inbound_email(
        session=session,
        raw=raw,
        mailbox="support@localhost",
        mail_from="",
        rcpt_tos=["support@localhost"],
        now=at,
        blobs=blobs,
    )
    process_inbound_email(
        session=session, inbound_id=recorded.id, now=at, blobs=blobs, settings=get_settings()
    )
    session.flush()
    return session.get(InboundEmail, recorded.id)


def test_raw_bytes_of_old_processed_mail_are_deleted_and_the_rest_is_kept(session, blobs):
    old = _ingest(session, blobs, make_mail(message_id="<old@x>"), at=NOW - timedelta(days=91))
    big = make_mail(
        message_id="<big@x>", attachments=[("scan.pdf", "application/pdf", b"%PDF" * (INLINE_RAW_LIMIT // 3))]
    )
    old_big = _ingest(session, blobs, big, at=NOW - timedelta(days=100))
    recent = _ingest(session, blobs, make_mail(message_id="<new@x>"), at=NOW - timedelta(days=89))
    quarantined = _ingest(session, blobs, NO_SENDER, at=NOW - timedelta(days=400))
    assert old.status is InboundStatus.PROCESSED and quarantined.status is InboundStatus.QUARANTINED
    assert old_big.blob_sha256 is not None and blobs.exists(old_big.blob_sha256)
    big_digest = old_big.blob_sha256

    purged = purge_raw_mail(session=session, now=NOW, older_than=PERIOD)
    session.expire_all()

    assert purged.count == 2
    assert purged.unused_blobs == [big_digest]
    for row in (old, old_big):
        assert row.raw is None and row.blob_sha256 is None and row.raw_deleted_at == NOW
        assert row.status is InboundStatus.PROCESSED and row.sha256 and row.message_id
        interaction = session.get(Interaction, row.interaction_id)
        assert interaction is not None and interaction.text
        with pytest.raises(Exception, match="deleted on .* after the retention period"):
            load_raw(row=row, blobs=blobs)
    assert recent.raw is not None and recent.raw_deleted_at is None
    assert load_raw(row=quarantined, blobs=blobs) == NO_SENDER
    assert purge_raw_mail(session=session, now=NOW, older_than=PERIOD).count == 0


def test_a_blob_another_row_still_uses_is_kept(session, blobs):
    from tests.factories import make_interaction

    big = make_mail(message_id="<shared@x>", body="x" * (INLINE_RAW_LIMIT + 10))
    row = _ingest(session, blobs, big, at=NOW - timedelta(days=200))
    # Someone forwarded the very same message as an attachment: its bytes are the attachment's too.
    interaction = make_interaction(session, attachments=[("fwd.eml", "message/rfc822", len(big))])
    interaction.attachments[0].sha256 = row.blob_sha256
    session.flush()

    purged = purge_raw_mail(session=session, now=NOW, older_than=PERIOD)
    assert purged.count == 1 and purged.unused_blobs == []


def test_the_api_says_why_deleted_raw_bytes_are_gone(client, session, blobs):
    _agent, token = make_agent(session, email="eva@centrala.test")
    row = _ingest(session, blobs, make_mail(message_id="<api@x>"), at=NOW - timedelta(days=365))
    purge_raw_mail(session=session, now=NOW, older_than=PERIOD)
    response = client.get(
        f"/api/v1/inbound-emails/{row.id}/raw", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 404
    assert "retention period" in response.json()["detail"]


def test_the_retention_job_archives_tickets_and_deletes_raw_mail_in_batches(
    committed_db, redis_url, monkeypatch
):
    from centrala.workers.jobs import RetentionReport, apply_retention

    monkeypatch.setenv("CENTRALA_ARCHIVE_CLOSED_AFTER_DAYS", "30")
    monkeypatch.setenv("CENTRALA_RAW_MAIL_RETENTION_DAYS", "60")
    monkeypatch.setattr("centrala.tickets.retention.ARCHIVE_BATCH", 2)
    get_settings.cache_clear()
    try:
        settings = get_settings()
        blobs = BlobStore(settings.blob_dir)
        now = datetime.now(UTC)
        with session_scope() as session:
            rows = [
                _ingest(
                    session,
                    blobs,
                    make_mail(message_id=f"<job{n}@x>", subject=f"Věc {n}"),
                    at=now - timedelta(days=61),
                )
                for n in range(3)
            ]
            for ticket in session.scalars(select(Ticket)):
                ticket.status, ticket.closed_at = TicketStatus.CLOSED, now - timedelta(days=31)
        report = apply_retention()
        assert (report.archived_tickets, report.raw_mail_deleted, report.finished) == (3, 3, True)
        with session_scope() as session:
            assert all(t.archived_at is not None for t in session.scalars(select(Ticket)))
            assert all(session.get(InboundEmail, r.id).raw_deleted_at is not None for r in rows)
        assert apply_retention() == RetentionReport(0, 0, finished=True)
        with session_scope() as session:
            for ticket in session.scalars(select(Ticket)):
                ticket.archived_at = None
        assert apply_retention(max_seconds=0).finished is False
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
