"""segments and team leads

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('segment', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_contact_segment'), ['segment'], unique=False)

    with op.batch_alter_table('queue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lead_agent_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_queue_lead_agent_id_agent'), 'agent', ['lead_agent_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('sla_policy', schema=None) as batch_op:
        batch_op.add_column(sa.Column('segment', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sla_policy', schema=None) as batch_op:
        batch_op.drop_column('segment')

    with op.batch_alter_table('queue', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_queue_lead_agent_id_agent'), type_='foreignkey')
        batch_op.drop_column('lead_agent_id')

    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_segment'))
        batch_op.drop_column('segment')
