"""Alembic environment: runs migrations on the engine handed over in the config's attributes."""

from alembic import context

from centrala.schema import include_object, metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    is_sqlite = connection.dialect.name == "sqlite"
    if is_sqlite:
        # SQLite alters a table by copying it and dropping the old one; with foreign keys enforced, that DROP
        # would delete (ON DELETE CASCADE) or refuse because of every row pointing at the table. The pragma only
        # takes effect outside a transaction, so it goes to the driver before ours begins.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=is_sqlite,
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
            if is_sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")
        connection.commit()
    finally:
        if is_sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
