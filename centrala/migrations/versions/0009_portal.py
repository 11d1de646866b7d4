"""portal: sign-in links, sessions, CSAT surveys, organisation managers, case types

Revision ID: 0009_portal
Revises: 0008
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0009_portal'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('portal_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_hash', sa.String(length=64), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_portal_session_contact_id_contact'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_session')),
    sa.UniqueConstraint('session_hash', name=op.f('uq_portal_session_session_hash'))
    )
    with op.batch_alter_table('portal_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_session_contact_id'), ['contact_id'], unique=False)

    op.create_table('portal_sign_in_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('next_path', sa.String(length=200), nullable=True),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_portal_sign_in_token_contact_id_contact'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_sign_in_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_portal_sign_in_token_token_hash'))
    )
    with op.batch_alter_table('portal_sign_in_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_sign_in_token_contact_id_created_at'), ['contact_id', 'created_at'], unique=False)

    op.create_table('csat_survey',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('cycle', sa.Integer(), nullable=False),
    sa.Column('requested_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('answered_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('answered_by_contact_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['answered_by_contact_id'], ['contact.id'], name=op.f('fk_csat_survey_answered_by_contact_id_contact'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_csat_survey_ticket_id_ticket'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_csat_survey')),
    sa.UniqueConstraint('ticket_id', 'cycle', name=op.f('uq_csat_survey_ticket_id_cycle'))
    )
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_org_manager', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('case_type', sa.Enum('question', 'complaint', 'return', 'service', name='casetype', native_enum=False, length=16), nullable=True))
        batch_op.create_index(batch_op.f('ix_ticket_contact_id_updated_at_id'), ['contact_id', 'updated_at', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_contact_id_updated_at_id'))
        batch_op.drop_column('case_type')

    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_column('is_org_manager')

    op.drop_table('csat_survey')
    with op.batch_alter_table('portal_sign_in_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_sign_in_token_contact_id_created_at'))

    op.drop_table('portal_sign_in_token')
    with op.batch_alter_table('portal_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_session_contact_id'))

    op.drop_table('portal_session')
