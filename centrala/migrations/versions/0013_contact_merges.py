"""contact merges

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('contact_merge',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kept_contact_id', sa.Integer(), nullable=False),
    sa.Column('merged_contact_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('moved', sa.JSON(), nullable=False),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('undone_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], name=op.f('fk_contact_merge_agent_id_agent'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['kept_contact_id'], ['contact.id'], name=op.f('fk_contact_merge_kept_contact_id_contact'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['merged_contact_id'], ['contact.id'], name=op.f('fk_contact_merge_merged_contact_id_contact'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_merge'))
    )
    with op.batch_alter_table('contact_merge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_merge_kept_contact_id'), ['kept_contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contact_merge_merged_contact_id'), ['merged_contact_id'], unique=False)

    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_contact_merged_into_id_contact'), 'contact', ['merged_into_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_contact_merged_into_id_contact'), type_='foreignkey')
        batch_op.drop_column('merged_into_id')

    with op.batch_alter_table('contact_merge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_merge_merged_contact_id'))
        batch_op.drop_index(batch_op.f('ix_contact_merge_kept_contact_id'))

    op.drop_table('contact_merge')
