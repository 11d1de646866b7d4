"""The ``centrala`` command on the test database."""

import json
from datetime import UTC, datetime

from typer.testing import CliRunner

from centrala.cli import app
from centrala.core.blobs import BlobStore
from centrala.core.db import session_scope
from centrala.core.settings import get_settings
from centrala.ingest.ledger import record_inbound_email
from centrala.ingest.models import InboundEmail, InboundStatus
from tests.support.mails import make_mail


def _store(raw: bytes, *, mailbox: str, at: datetime, status: InboundStatus) -> None:
    with session_scope() as session:
        recorded = record_inbound_email(
            session=session,
            raw=raw,
            mailbox=mailbox,
            mail_from="",
            rcpt_tos=[mailbox],
            now=at,
            blobs=BlobStore(get_settings().blob_dir),
        )
        session.get(InboundEmail, recorded.id).status = status


def test_mail_ledger_counts_per_status_mailbox_and_period(committed_db, redis_url):
    _store(
        make_mail(message_id="<a@x>"),
        mailbox="support@localhost",
        at=datetime(2026, 10, 1, tzinfo=UTC),
        status=InboundStatus.PROCESSED,
    )
    _store(
        make_mail(message_id="<b@x>"),
        mailbox="support@localhost",
        at=datetime(2026, 11, 2, tzinfo=UTC),
        status=InboundStatus.QUARANTINED,
    )
    _store(
        make_mail(message_id="<c@x>"),
        mailbox="sales@localhost",
        at=datetime(2026, 11, 3, tzinfo=UTC),
        status=InboundStatus.RECEIVED,
    )
    runner = CliRunner()

    result = runner.invoke(app, ["mail", "ledger", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"received": 1, "processed": 1, "quarantined": 1}

    result = runner.invoke(app, ["mail", "ledger", "--json", "--since", "2026-11-01"])
    assert json.loads(result.output) == {"received": 1, "processed": 0, "quarantined": 1}

    table = runner.invoke(app, ["mail", "ledger", "--since", "2026-11-01", "--until", "2026-11-03"]).output
    assert "support@localhost" in table and "sales@localhost" not in table

    bad = runner.invoke(app, ["mail", "ledger", "--since", "last tuesday"])
    assert bad.exit_code != 0 and "is not a date" in bad.output
