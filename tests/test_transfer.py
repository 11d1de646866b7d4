"""Moving an installation: export from one database, import into an empty other one (SQLite and PostgreSQL,
both ways), and every table's rows and every blob arrive unchanged."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from centrala.core.blobs import BlobStore
from centrala.core.db import create_db_engine
from centrala.core.errors import InvalidInputError
from centrala.core.settings import Settings, get_settings
from centrala.ingest.ledger import INLINE_RAW_LIMIT, record_inbound_email
from centrala.ingest.models import CallEventRecord
from centrala.ingest.process import process_inbound_email
from centrala.schema import metadata, upgrade_database
from centrala.tickets.models import (
    ClockState,
    Contact,
    Organization,
    OutboundEmail,
    OutboundKind,
    OutboundState,
    SlaClock,
    SlaMetric,
    Ticket,
)
from centrala.tickets.phone_models import Call
from centrala.tickets.search import search
from centrala.tickets.seed import seed_demo_data
from centrala.transfer import export_installation, import_installation
from tests.factories import make_contact
from tests.support.mails import make_mail
from tests.support.processes import run, service_env

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PDF = b"%PDF-1.4 invoice"


def _sqlite(path: Path) -> Engine:
    engine = create_db_engine(Settings(database_url=f"sqlite:///{path}"))
    upgrade_database(engine)
    return engine


@pytest.fixture()
def postgres() -> Iterator[Engine]:
    """A new, migrated PostgreSQL database, dropped afterwards (skipped when no server answers)."""
    server = os.environ.get(
        "CENTRALA_TEST_SERVER_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"centrala_transfer_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        pytest.skip(f"no PostgreSQL server to import into: {error.orig}")
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(Settings(database_url=url))
    try:
        upgrade_database(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _populate(engine: Engine, blobs: BlobStore) -> None:
    """An installation with a bit of everything: seed data, processed and quarantined mail with attachments and
    a large message in the blob store, a merge and a follow-up pointing at later rows, clocks, a call."""
    settings = get_settings()
    with Session(engine) as session:
        seed_demo_data(session=session, now=NOW, region="CZ")
        mails = [
            make_mail(
                message_id="<a@x>",
                subject="Faktura",
                body="Dobrý den, faktura nesedí.",
                attachments=[("faktura.pdf", "application/pdf", PDF)],
            ),
            make_mail(
                message_id="<b@x>",
                sender="Petr <petr@acme.example>",
                subject="Dodávka",
                body="x" * (INLINE_RAW_LIMIT + 100),
            ),
            b"To: support@localhost\r\nSubject: no sender\r\n\r\nbody\r\n",
        ]
        for n, raw in enumerate(mails):
            recorded = record_inbound_email(
                session=session,
                raw=raw,
                mailbox="support@localhost",
                mail_from="",
                rcpt_tos=["support@localhost"],
                now=NOW + timedelta(minutes=n),
                blobs=blobs,
            )
            process_inbound_email(
                session=session,
                inbound_id=recorded.id,
                now=NOW + timedelta(minutes=n),
                blobs=blobs,
                settings=settings,
            )
        older, newer = make_contact(session, name="Stará Jana"), make_contact(session, name="Nová Jana")
        older.merged_into_id = newer.id
        first, second = session.scalars(select(Ticket).order_by(Ticket.id)).all()[:2]
        first.follows_up_ticket_id = second.id
        session.add(
            SlaClock(
                ticket=first,
                metric=SlaMetric.FIRST_RESPONSE,
                state=ClockState.PAUSED,
                target_minutes=60,
                achieved_minutes=12.5,
                started_at=NOW,
                paused_since=NOW,
            )
        )
        early = Call(
            call_sid="CA" + "1" * 32,
            from_number="+420601123456",
            rung_agent_ids=[1],
            started_at=NOW,
            created_at=NOW,
            updated_at=NOW,
        )
        late = Call(call_sid="CA" + "2" * 32, from_number="+420601123456", created_at=NOW, updated_at=NOW)
        session.add_all([early, late])
        session.flush()
        early.callback_call_id = late.id
        session.add(
            OutboundEmail(
                ticket=first,
                kind=OutboundKind.REPLY,
                mailbox="support@localhost",
                mail_from="support@localhost",
                recipient="jana@example.cz",
                to_addresses=["jana@example.cz"],
                message_id="r1@centrala.test",
                raw=b"Subject: Re\r\n\r\n\xc5\xbelu\xc5\xa5\r\n",
                state=OutboundState.DEFERRED,
                attempts=2,
                next_attempt_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        session.add(
            CallEventRecord(
                event_key="k1",
                call_sid=early.call_sid,
                kind="status",
                form={"CallStatus": "completed", "Žluť": "kůň"},
                received_at=NOW,
            )
        )
        session.commit()


def _export(engine: Engine, blobs: BlobStore) -> str:
    out = io.StringIO()
    export_installation(engine=engine, blobs=blobs, out=out)
    return out.getvalue()


def _content(export: str) -> list[dict]:
    """The rows and blobs of an export, without the header (which says when and from where)."""
    return [json.loads(line) for line in export.split("\n")[1:] if line]


def test_an_installation_moves_from_sqlite_to_postgresql_and_back_unchanged(tmp_path, postgres):
    source, source_blobs = _sqlite(tmp_path / "source.db"), BlobStore(tmp_path / "source-blobs")
    _populate(source, source_blobs)
    exported = _export(source, source_blobs)
    records = _content(exported)
    tables = {record["table"] for record in records if "table" in record}
    assert {
        "contact",
        "ticket",
        "interaction",
        "attachment",
        "inbound_email",
        "outbound_email",
        "call",
    } <= tables
    assert sum("blob" in record for record in records) >= 2  # the PDF and the large message
    assert all(not record.get("table", "").startswith("interaction_fts") for record in records)

    pg_blobs = BlobStore(tmp_path / "pg-blobs")
    summary = import_installation(engine=postgres, blobs=pg_blobs, lines=io.StringIO(exported))
    assert summary.rows["contact"] == sum(record.get("table") == "contact" for record in records)
    assert _content(_export(postgres, pg_blobs)) == records

    back, back_blobs = _sqlite(tmp_path / "back.db"), BlobStore(tmp_path / "back-blobs")
    import_installation(engine=back, blobs=back_blobs, lines=io.StringIO(_export(postgres, pg_blobs)))
    assert _content(_export(back, back_blobs)) == records

    # The service carries on where the source left off: new ids do not collide, search finds imported text.
    for engine in (postgres, back):
        with Session(engine) as session:
            largest = session.scalar(select(Organization.id).order_by(Organization.id.desc()).limit(1))
            organization = Organization(name="Nová firma", created_at=NOW)
            session.add(organization)
            session.flush()
            assert organization.id > largest
            found = search(session=session, query="faktura nesedí", region="CZ")
            assert [interaction.subject for interaction in found.interactions] == ["Faktura"]
            merged = session.scalar(select(Contact).where(Contact.name == "Stará Jana"))
            assert merged.merged_into_id is not None
            session.rollback()
    for engine in (source, back):
        engine.dispose()


def test_import_refuses_a_database_that_is_not_empty(tmp_path):
    source, blobs = _sqlite(tmp_path / "source.db"), BlobStore(tmp_path / "blobs")
    _populate(source, blobs)
    exported = _export(source, blobs)
    with pytest.raises(InvalidInputError, match="not empty"):
        import_installation(engine=source, blobs=blobs, lines=io.StringIO(exported))
    source.dispose()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda lines: lines[:-1], "cut off"),
        (lambda lines: lines[:5] + lines[6:], "do not fit together|do not match"),
        (lambda lines: [line for line in lines if '"blob"' not in line[:12]], "blob count does not match"),
        (lambda lines: [lines[0].replace('"schema":"', '"schema":"0000x')] + lines[1:], "schema"),
        (lambda lines: ["{}"] + lines[1:], "not a Centrala export"),
        (lambda lines: lines[:3] + ["{not json"] + lines[3:], "line 4 is not JSON"),
        (lambda lines: lines[:2] + ['{"table": "nonsense", "row": {}}'] + lines[2:], "unknown table"),
    ],
)
def test_a_damaged_export_is_refused_and_leaves_the_database_empty(tmp_path, damage, message):
    source, blobs = _sqlite(tmp_path / "source.db"), BlobStore(tmp_path / "blobs")
    _populate(source, blobs)
    lines = _export(source, blobs).split("\n")[:-1]
    target = _sqlite(tmp_path / "target.db")
    with pytest.raises(InvalidInputError, match=message):
        import_installation(engine=target, blobs=BlobStore(tmp_path / "target-blobs"), lines=damage(lines))
    with target.connect() as connection:
        for table in metadata.sorted_tables:
            assert connection.execute(select(table).limit(1)).first() is None, table.name
    source.dispose()
    target.dispose()


def test_the_commands_move_an_installation_through_a_compressed_file(tmp_path):
    source_env = service_env(tmp_path / "source", http_port=1, smtp_port=1, embedded=True)
    run(["migrate"], source_env)
    run(["seed"], source_env)
    dump = tmp_path / "installation.jsonl.gz"
    run(["export", "--output", str(dump)], source_env)
    with gzip.open(dump, "rt", encoding="utf-8") as handle:
        assert json.loads(handle.readline())["format"] == "centrala-export"

    target_env = service_env(tmp_path / "target", http_port=1, smtp_port=1, embedded=True)
    assert "imported" in run(["import", str(dump)], target_env)
    for env in (source_env, target_env):
        env["CENTRALA_DATABASE_URL"] = f"sqlite:///{Path(env['CENTRALA_VAR_DIR']) / 'centrala.db'}"
    source = create_engine(source_env["CENTRALA_DATABASE_URL"])
    target = create_engine(target_env["CENTRALA_DATABASE_URL"])
    exported = [_export(engine, BlobStore(tmp_path / "none")) for engine in (source, target)]
    assert _content(exported[0]) == _content(exported[1])

    again = subprocess.run(
        [sys.executable, "-m", "centrala", "import", str(dump)],
        check=False,
        env=target_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "not empty" in again.stderr
    source.dispose()
    target.dispose()
