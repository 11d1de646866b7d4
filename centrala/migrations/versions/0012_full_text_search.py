"""full-text search of interactions

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23

SQLite: an FTS5 table over interaction (subject, text) kept in step by triggers, diacritics folded so that
"prihlaseni" finds "přihlášení". PostgreSQL: a GIN index on the 'simple' text-search vector of the same
columns, lower-cased and with Central European diacritics folded. Neither is described by the models (centrala.schema.SEARCH_OBJECTS).

A later migration that alters ``interaction`` on SQLite in batch mode copies the table, which drops these
triggers: it must create them again (``create_sqlite_triggers``).
"""

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

# Diacritics of Czech, Slovak, Polish and German folded with translate() (unaccent is an extension that needs a
# superuser to install); the query side folds the same way (centrala.tickets.search).
# "<" and ">" become spaces: PostgreSQL's parser reads "<word>...</word>" as markup and drops the words inside.
FOLD_FROM, FOLD_TO = "áäčďéěëíľĺňóôöřŕšťúůüýžąćęłńśźż<>", "aacdeeeillnooorrstuuuyzacelnszz  "
PG_VECTOR = (
    "to_tsvector('simple', translate(lower(coalesce(subject, '') || ' ' || coalesce(text, '')), "
    f"'{FOLD_FROM}', '{FOLD_TO}'))"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_interaction_fulltext ON interaction USING gin ({PG_VECTOR})")
        return
    op.execute(
        "CREATE VIRTUAL TABLE interaction_fts USING fts5(subject, text, content='interaction', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    create_sqlite_triggers()
    op.execute("INSERT INTO interaction_fts(interaction_fts) VALUES ('rebuild')")


def create_sqlite_triggers() -> None:
    """The triggers that keep the FTS5 table in step with ``interaction``."""
    op.execute(
        "CREATE TRIGGER interaction_fts_insert AFTER INSERT ON interaction BEGIN "
        "INSERT INTO interaction_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END"
    )
    op.execute(
        "CREATE TRIGGER interaction_fts_delete AFTER DELETE ON interaction BEGIN "
        "INSERT INTO interaction_fts(interaction_fts, rowid, subject, text) "
        "VALUES ('delete', old.id, old.subject, old.text); END"
    )
    op.execute(
        "CREATE TRIGGER interaction_fts_update AFTER UPDATE OF subject, text ON interaction BEGIN "
        "INSERT INTO interaction_fts(interaction_fts, rowid, subject, text) "
        "VALUES ('delete', old.id, old.subject, old.text); "
        "INSERT INTO interaction_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_interaction_fulltext")
        return
    for trigger in ("interaction_fts_insert", "interaction_fts_delete", "interaction_fts_update"):
        op.execute(f"DROP TRIGGER {trigger}")
    op.execute("DROP TABLE interaction_fts")
