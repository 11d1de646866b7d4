"""telephony

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('call_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_key', sa.String(length=200), nullable=False),
    sa.Column('call_sid', sa.String(length=34), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('form', sa.JSON(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('received_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('queued_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.Enum('received', 'processed', 'quarantined', name='inboundstatus', native_enum=False, length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('processed_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_event')),
    sa.UniqueConstraint('event_key', name=op.f('uq_call_event_event_key'))
    )
    with op.batch_alter_table('call_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_event_call_sid'), ['call_sid'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_event_status_received_at'), ['status', 'received_at'], unique=False)

    op.create_table('agent_queue',
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], name=op.f('fk_agent_queue_agent_id_agent'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], name=op.f('fk_agent_queue_queue_id_queue'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', 'queue_id', name=op.f('pk_agent_queue'))
    )
    with op.batch_alter_table('agent_queue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_queue_queue_id'), ['queue_id'], unique=False)

    op.create_table('call',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_sid', sa.String(length=34), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('from_number', sa.String(length=20), nullable=True),
    sa.Column('from_raw', sa.String(length=200), nullable=True),
    sa.Column('to_number', sa.String(length=20), nullable=True),
    sa.Column('caller_name', sa.String(length=200), nullable=True),
    sa.Column('line_number', sa.String(length=20), nullable=True),
    sa.Column('queue_id', sa.Integer(), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('rung_agent_ids', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('started_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('answered_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ring_seconds', sa.Integer(), nullable=True),
    sa.Column('wait_seconds', sa.Integer(), nullable=True),
    sa.Column('talk_seconds', sa.Integer(), nullable=True),
    sa.Column('recording_sid', sa.String(length=34), nullable=True),
    sa.Column('recording_url', sa.String(length=1000), nullable=True),
    sa.Column('recording_duration', sa.Integer(), nullable=True),
    sa.Column('recording_sha256', sa.String(length=64), nullable=True),
    sa.Column('recording_size', sa.Integer(), nullable=True),
    sa.Column('transcription_text', sa.Text(), nullable=True),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('caller_match', sa.Enum('single', 'shared', 'provisional', 'withheld', name='callermatch', native_enum=False, length=16), nullable=False),
    sa.Column('candidate_contact_ids', sa.JSON(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('interaction_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('agent_outcome', sa.String(length=40), nullable=True),
    sa.Column('callback_state', sa.Enum('pending', 'done', 'cancelled', name='callbackstate', native_enum=False, length=16), nullable=True),
    sa.Column('callback_due_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('callback_done_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('callback_call_id', sa.Integer(), nullable=True),
    sa.Column('callback_for_call_id', sa.Integer(), nullable=True),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], name=op.f('fk_call_agent_id_agent'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['callback_call_id'], ['call.id'], name=op.f('fk_call_callback_call_id_call'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['callback_for_call_id'], ['call.id'], name=op.f('fk_call_callback_for_call_id_call'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_call_contact_id_contact'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['interaction_id'], ['interaction.id'], name=op.f('fk_call_interaction_id_interaction'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], name=op.f('fk_call_queue_id_queue'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_call_ticket_id_ticket'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call')),
    sa.UniqueConstraint('call_sid', name=op.f('uq_call_call_sid'))
    )
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_callback_state_callback_due_at'), ['callback_state', 'callback_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_from_number'), ['from_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_outcome'), ['outcome'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_queue_id'), ['queue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_ticket_id'), ['ticket_id'], unique=False)

    with op.batch_alter_table('agent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone_number', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('availability', sa.Enum('available', 'busy', 'offline', name='agentavailability', native_enum=False, length=16), nullable=False, server_default='offline'))
        batch_op.create_index(batch_op.f('ix_agent_phone_number'), ['phone_number'], unique=False)

    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_provisional', sa.Boolean(), nullable=False, server_default=sa.false()))



def downgrade() -> None:
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_column('is_provisional')

    with op.batch_alter_table('agent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_phone_number'))
        batch_op.drop_column('availability')
        batch_op.drop_column('phone_number')

    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_call_started_at'))
        batch_op.drop_index(batch_op.f('ix_call_queue_id'))
        batch_op.drop_index(batch_op.f('ix_call_outcome'))
        batch_op.drop_index(batch_op.f('ix_call_from_number'))
        batch_op.drop_index(batch_op.f('ix_call_contact_id'))
        batch_op.drop_index(batch_op.f('ix_call_callback_state_callback_due_at'))
        batch_op.drop_index(batch_op.f('ix_call_agent_id'))

    op.drop_table('call')
    with op.batch_alter_table('agent_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_queue_queue_id'))

    op.drop_table('agent_queue')
    with op.batch_alter_table('call_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_event_status_received_at'))
        batch_op.drop_index(batch_op.f('ix_call_event_call_sid'))

    op.drop_table('call_event')
