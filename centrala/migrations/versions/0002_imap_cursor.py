"""imap cursor

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('imap_cursor',
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('folder', sa.String(length=1000), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('last_uid', sa.BigInteger(), nullable=False),
    sa.Column('after_import_uid', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('source', 'folder', name=op.f('pk_imap_cursor'))
    )


def downgrade() -> None:
    op.drop_table('imap_cursor')
