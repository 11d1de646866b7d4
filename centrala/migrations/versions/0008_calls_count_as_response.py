"""calls count as response

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sla_policy', schema=None) as batch_op:
        batch_op.add_column(sa.Column('calls_count_as_response', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('sla_policy', schema=None) as batch_op:
        batch_op.drop_column('calls_count_as_response')
