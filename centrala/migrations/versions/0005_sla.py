"""SLA: business calendars, policies, clocks and their segment ledger

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('business_calendar',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('weekly_hours', sa.JSON(), nullable=False),
    sa.Column('holidays_country', sa.String(length=8), nullable=True),
    sa.Column('holidays_subdiv', sa.String(length=16), nullable=True),
    sa.Column('extra_holidays', sa.JSON(), nullable=False),
    sa.Column('updated_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_business_calendar')),
    sa.UniqueConstraint('name', name=op.f('uq_business_calendar_name'))
    )
    op.create_table('sla_policy',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('precedence', sa.Integer(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=True),
    sa.Column('priority', sa.Enum('low', 'normal', 'high', 'urgent', name='ticketpriority', native_enum=False, length=16), nullable=True),
    sa.Column('organization_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.Enum('email', 'phone', 'portal', 'note', name='channel', native_enum=False, length=16), nullable=True),
    sa.Column('calendar_id', sa.Integer(), nullable=True),
    sa.Column('targets', sa.JSON(), nullable=False),
    sa.Column('warn_before_minutes', sa.Integer(), nullable=False),
    sa.Column('escalations', sa.JSON(), nullable=False),
    sa.Column('updated_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['calendar_id'], ['business_calendar.id'], name=op.f('fk_sla_policy_calendar_id_business_calendar'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_sla_policy_organization_id_organization'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], name=op.f('fk_sla_policy_queue_id_queue'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_policy')),
    sa.UniqueConstraint('name', name=op.f('uq_sla_policy_name'))
    )
    op.create_table('sla_clock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('policy_id', sa.Integer(), nullable=True),
    sa.Column('metric', sa.Enum('first_response', 'next_response', 'resolution', name='slametric', native_enum=False, length=16), nullable=False),
    sa.Column('cycle', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('running', 'paused', 'met', 'cancelled', name='clockstate', native_enum=False, length=16), nullable=False),
    sa.Column('target_minutes', sa.Integer(), nullable=False),
    sa.Column('warn_before_minutes', sa.Integer(), nullable=False),
    sa.Column('achieved_minutes', sa.Float(), nullable=False),
    sa.Column('started_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('running_since', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paused_since', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('due_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('warn_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_check_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('warned_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('breached_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('met_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stopped_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['policy_id'], ['sla_policy.id'], name=op.f('fk_sla_clock_policy_id_sla_policy'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_sla_clock_ticket_id_ticket'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_clock')),
    sa.UniqueConstraint('ticket_id', 'metric', 'cycle', name=op.f('uq_sla_clock_ticket_id_metric_cycle'))
    )
    with op.batch_alter_table('sla_clock', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sla_clock_next_check_at'), ['next_check_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sla_clock_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('sla_segment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clock_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('running', 'paused', 'outside_hours', name='segmentkind', native_enum=False, length=16), nullable=False),
    sa.Column('cause', sa.String(length=200), nullable=False),
    sa.Column('started_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['clock_id'], ['sla_clock.id'], name=op.f('fk_sla_segment_clock_id_sla_clock'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_segment'))
    )
    with op.batch_alter_table('sla_segment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sla_segment_clock_id'), ['clock_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sla_segment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sla_segment_clock_id'))

    op.drop_table('sla_segment')
    with op.batch_alter_table('sla_clock', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sla_clock_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_sla_clock_next_check_at'))

    op.drop_table('sla_clock')
    op.drop_table('sla_policy')
    op.drop_table('business_calendar')
