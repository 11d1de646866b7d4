"""sla due index

Revision ID: 0010
Revises: 0009_portal
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0010'
down_revision = '0009_portal'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sla_clock', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sla_clock_state_due_at'), ['state', 'due_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sla_clock', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sla_clock_state_due_at'))
