"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.Enum('agent', 'supervisor', 'admin', name='agentrole', native_enum=False, length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent')),
    sa.UniqueConstraint('email', name=op.f('uq_agent_email')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_agent_token_hash'))
    )
    op.create_table('organization',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.Enum('customer', 'partner', name='organizationkind', native_enum=False, length=16), nullable=False),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organization'))
    )
    op.create_table('queue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('email_address', sa.String(length=320), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue')),
    sa.UniqueConstraint('email_address', name=op.f('uq_queue_email_address')),
    sa.UniqueConstraint('name', name=op.f('uq_queue_name'))
    )
    op.create_table('contact',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=True),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_contact_organization_id_organization'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact'))
    )
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_organization_id'), ['organization_id'], unique=False)

    op.create_table('organization_domain',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_organization_domain_organization_id_organization'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organization_domain')),
    sa.UniqueConstraint('domain', name=op.f('uq_organization_domain_domain'))
    )
    with op.batch_alter_table('organization_domain', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_organization_domain_organization_id'), ['organization_id'], unique=False)

    op.create_table('contact_email',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_contact_email_contact_id_contact'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_email')),
    sa.UniqueConstraint('address', name=op.f('uq_contact_email_address'))
    )
    with op.batch_alter_table('contact_email', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_email_contact_id'), ['contact_id'], unique=False)

    op.create_table('contact_phone',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_contact_phone_contact_id_contact'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_phone')),
    sa.UniqueConstraint('contact_id', 'number', name=op.f('uq_contact_phone_contact_id_number'))
    )
    with op.batch_alter_table('contact_phone', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_phone_number'), ['number'], unique=False)

    op.create_table('ticket',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('status', sa.Enum('new', 'open', 'pending', 'resolved', 'closed', name='ticketstatus', native_enum=False, length=16), nullable=False),
    sa.Column('priority', sa.Enum('low', 'normal', 'high', 'urgent', name='ticketpriority', native_enum=False, length=16), nullable=False),
    sa.Column('channel', sa.Enum('email', 'phone', 'portal', 'note', name='channel', native_enum=False, length=16), nullable=False),
    sa.Column('mailbox', sa.String(length=320), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.Column('queue_id', sa.Integer(), nullable=True),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['assignee_id'], ['agent.id'], name=op.f('fk_ticket_assignee_id_agent'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_ticket_contact_id_contact')),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], name=op.f('fk_ticket_queue_id_queue'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket'))
    )
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_assignee_id'), ['assignee_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_queue_id'), ['queue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_status_updated_at'), ['status', 'updated_at'], unique=False)

    op.create_table('interaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.Enum('email', 'phone', 'portal', 'note', name='channel', native_enum=False, length=16), nullable=False),
    sa.Column('direction', sa.Enum('inbound', 'outbound', 'internal', name='direction', native_enum=False, length=16), nullable=False),
    sa.Column('external_id', sa.String(length=998), nullable=True),
    sa.Column('author_name', sa.String(length=200), nullable=False),
    sa.Column('author_address', sa.String(length=320), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('html', sa.Text(), nullable=True),
    sa.Column('thread_reason', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], name=op.f('fk_interaction_agent_id_agent'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_interaction_contact_id_contact')),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_interaction_ticket_id_ticket'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interaction')),
    sa.UniqueConstraint('channel', 'external_id', name=op.f('uq_interaction_channel_external_id'))
    )
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_interaction_contact_id_occurred_at'), ['contact_id', 'occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_interaction_ticket_id_occurred_at'), ['ticket_id', 'occurred_at'], unique=False)

    op.create_table('attachment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('interaction_id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content_id', sa.String(length=255), nullable=True),
    sa.Column('is_inline', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['interaction_id'], ['interaction.id'], name=op.f('fk_attachment_interaction_id_interaction'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachment'))
    )
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachment_interaction_id'), ['interaction_id'], unique=False)

    op.create_table('inbound_email',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=True),
    sa.Column('blob_sha256', sa.String(length=64), nullable=True),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('mailbox', sa.String(length=320), nullable=False),
    sa.Column('mail_from', sa.String(length=998), nullable=False),
    sa.Column('rcpt_tos', sa.JSON(), nullable=False),
    sa.Column('peer', sa.String(length=100), nullable=True),
    sa.Column('received_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('queued_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.Enum('received', 'processed', 'quarantined', name='inboundstatus', native_enum=False, length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('processed_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('message_id', sa.String(length=998), nullable=True),
    sa.Column('interaction_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['interaction_id'], ['interaction.id'], name=op.f('fk_inbound_email_interaction_id_interaction'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_email')),
    sa.UniqueConstraint('sha256', name=op.f('uq_inbound_email_sha256'))
    )
    with op.batch_alter_table('inbound_email', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_email_interaction_id'), ['interaction_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_email_status_received_at'), ['status', 'received_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('inbound_email', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_email_status_received_at'))
        batch_op.drop_index(batch_op.f('ix_inbound_email_interaction_id'))

    op.drop_table('inbound_email')
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachment_interaction_id'))

    op.drop_table('attachment')
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interaction_ticket_id_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_interaction_contact_id_occurred_at'))

    op.drop_table('interaction')
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_status_updated_at'))
        batch_op.drop_index(batch_op.f('ix_ticket_queue_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_contact_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_assignee_id'))

    op.drop_table('ticket')
    with op.batch_alter_table('contact_phone', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_phone_number'))

    op.drop_table('contact_phone')
    with op.batch_alter_table('contact_email', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_email_contact_id'))

    op.drop_table('contact_email')
    with op.batch_alter_table('organization_domain', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_organization_domain_organization_id'))

    op.drop_table('organization_domain')
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_organization_id'))

    op.drop_table('contact')
    op.drop_table('queue')
    op.drop_table('organization')
    op.drop_table('agent')
