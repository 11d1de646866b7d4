"""outbound e-mail: the outbox table and undeliverable contact addresses

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbound_email',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('interaction_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.Enum('reply', 'acknowledgement', 'notification', name='outboundkind', native_enum=False, length=16), nullable=False),
    sa.Column('mailbox', sa.String(length=320), nullable=False),
    sa.Column('mail_from', sa.String(length=320), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('to_addresses', sa.JSON(), nullable=False),
    sa.Column('cc_addresses', sa.JSON(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('state', sa.Enum('queued', 'deferred', 'sent', 'bounced', 'failed', name='outboundstate', native_enum=False, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('enqueued_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['interaction_id'], ['interaction.id'], name=op.f('fk_outbound_email_interaction_id_interaction'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_outbound_email_ticket_id_ticket'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_email')),
    sa.UniqueConstraint('interaction_id', name=op.f('uq_outbound_email_interaction_id')),
    sa.UniqueConstraint('message_id', name=op.f('uq_outbound_email_message_id'))
    )
    with op.batch_alter_table('outbound_email', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbound_email_recipient_kind_created_at'), ['recipient', 'kind', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbound_email_state_next_attempt_at'), ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbound_email_ticket_id'), ['ticket_id'], unique=False)

    with op.batch_alter_table('contact_email', schema=None) as batch_op:
        batch_op.add_column(sa.Column('undeliverable_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contact_email', schema=None) as batch_op:
        batch_op.drop_column('undeliverable_at')

    with op.batch_alter_table('outbound_email', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbound_email_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_outbound_email_state_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_outbound_email_recipient_kind_created_at'))

    op.drop_table('outbound_email')
