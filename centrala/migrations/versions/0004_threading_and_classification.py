"""threading and classification

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.add_column(sa.Column('full_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('classification', sa.String(length=16), nullable=False, server_default='normal'))
        batch_op.add_column(sa.Column('cc_addresses', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('flag', sa.String(length=200), nullable=True))

    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('follows_up_ticket_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_ticket_follows_up_ticket_id_ticket'), 'ticket', ['follows_up_ticket_id'], ['id'], ondelete='SET NULL')

def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ticket_follows_up_ticket_id_ticket'), type_='foreignkey')
        batch_op.drop_column('follows_up_ticket_id')

    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.drop_column('flag')
        batch_op.drop_column('cc_addresses')
        batch_op.drop_column('classification')
        batch_op.drop_column('full_text')

