"""The Alembic migrations create exactly the schema the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from centrala.schema import include_object, metadata


def test_models_and_migrations_describe_the_same_schema(engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": include_object})
        differences = compare_metadata(context, metadata)
    assert differences == [], f"models and migrations differ; add a migration for: {differences}"


def test_upgrading_a_database_with_history_keeps_every_row(tmp_path):
    """SQLite changes a table by copying and dropping it; an upgrade must neither fail on the rows pointing at
    it nor cascade their deletion (an installation upgraded with data in it)."""
    from sqlalchemy import text

    from centrala.core.db import create_db_engine
    from centrala.core.settings import Settings
    from centrala.schema import upgrade_database

    engine = create_db_engine(Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}"))
    upgrade_database(engine, "0012")
    moment = "2026-01-05 09:00:00"
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO contact (id, name, is_provisional, is_org_manager, created_at, updated_at) "
                 "VALUES (1, 'Jana', 0, 0, :t, :t)"), {"t": moment})
        connection.execute(text("INSERT INTO contact_email (contact_id, address) VALUES (1, 'jana@example.cz')"))
        connection.execute(
            text("INSERT INTO ticket (id, subject, status, priority, channel, contact_id, created_at, updated_at) "
                 "VALUES (1, 'Faktura', 'open', 'normal', 'email', 1, :t, :t)"), {"t": moment})
        connection.execute(
            text("INSERT INTO interaction (ticket_id, contact_id, channel, direction, author_name, subject, text, "
                 "thread_reason, classification, cc_addresses, occurred_at, created_at) "
                 "VALUES (1, 1, 'email', 'inbound', '', 'Faktura', 'Dobrý den', '', 'normal', '[]', :t, :t)"),
            {"t": moment})
    upgrade_database(engine, "head")
    with engine.connect() as connection:
        counts = {table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                  for table in ("contact", "contact_email", "ticket", "interaction", "interaction_fts")}
        enforced = connection.execute(text("PRAGMA foreign_keys")).scalar()
    engine.dispose()
    assert counts == {"contact": 1, "contact_email": 1, "ticket": 1, "interaction": 1, "interaction_fts": 1}
    assert enforced == 1


def test_message_columns_store_large_values_compressed_with_lz4_where_the_server_offers_it(session, tmp_path):
    """A whole message in the ledger and its text on the timeline are stored compressed with LZ4 on a PostgreSQL
    server that has it (cheaper for the server than its own pglz), and read back byte for byte everywhere."""
    from datetime import UTC, datetime

    from sqlalchemy import select, text

    from centrala.core.blobs import BlobStore
    from centrala.core.db import lz4_available
    from centrala.ingest.ledger import record_inbound_email
    from centrala.ingest.models import InboundEmail
    from tests.factories import make_interaction

    body = "Dobrý den, faktura za březen nesouhlasí s objednávkou č. 4471.\r\n" * 400  # ~26 KB, compressible
    raw = (
        "From: Jana Nováková <jana@example.cz>\r\nTo: support@localhost\r\nSubject: Faktura\r\n"
        "Message-ID: <lz4-ledger@example.cz>\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + body
    ).encode()
    recorded = record_inbound_email(
        session=session, raw=raw, mailbox="support@localhost", mail_from="jana@example.cz",
        rcpt_tos=["support@localhost"], now=datetime(2026, 11, 24, 9, 0, tzinfo=UTC), blobs=BlobStore(tmp_path),
    )
    interaction = make_interaction(session, text=body)
    session.flush()
    session.expire_all()

    assert session.scalar(select(InboundEmail.raw).where(InboundEmail.id == recorded.id)) == raw
    assert session.get(type(interaction), interaction.id).text == body
    connection = session.connection()
    if lz4_available(connection):
        methods = connection.execute(
            text("SELECT (SELECT pg_column_compression(raw) FROM inbound_email WHERE id = :row), "
                 "(SELECT pg_column_compression(text) FROM interaction WHERE id = :interaction)"),
            {"row": recorded.id, "interaction": interaction.id},
        ).one()
        assert tuple(methods) == ("lz4", "lz4")
