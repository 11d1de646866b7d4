"""retention: archived tickets, deleted raw mail

Closed tickets past the archive age get archived_at; processed inbound mail whose raw bytes were deleted
after the retention period gets raw_deleted_at.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-23 16:03:37.906938
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_email', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_deleted_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_column('archived_at')
    with op.batch_alter_table('inbound_email', schema=None) as batch_op:
        batch_op.drop_column('raw_deleted_at')

