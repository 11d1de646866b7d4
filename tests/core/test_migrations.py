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
