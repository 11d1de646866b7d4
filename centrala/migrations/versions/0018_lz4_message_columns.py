"""message columns compressed with LZ4 on PostgreSQL

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-24

PostgreSQL compresses a value of more than about 2 KB before storing it (TOAST), by default with its own pglz,
which took about a quarter of the server's CPU time while mail was ingested (measured with perf: 3.6 % of all
samples, 13 % in all for the server). LZ4 compresses about as well for text and several times faster. The columns
that hold whole messages and their text are switched where the server offers LZ4 (PostgreSQL 14 or later, built
with it): the raw ledger, the interactions' text, full text and HTML, and the outbound messages. Values already
stored keep their compression and are read as before; new values use LZ4. SQLite does not compress values.
"""

from alembic import op

from centrala.core.db import lz4_available


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

COLUMNS = (
    ("inbound_email", "raw"),
    ("interaction", "text"),
    ("interaction", "full_text"),
    ("interaction", "html"),
    ("outbound_email", "raw"),
)


def upgrade() -> None:
    if lz4_available(op.get_bind()):
        _set_compression("lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql" and op.get_bind().dialect.server_version_info >= (14,):
        _set_compression("default")


def _set_compression(method: str) -> None:
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")
