"""teams, tags, custom fields, templates, api tokens, ticket merges

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23 16:00:00.192382
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('custom_field',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=50), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.Enum('text', 'number', 'date', 'choice', name='customfieldkind', native_enum=False, length=16), nullable=False),
    sa.Column('choices', sa.JSON(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_custom_field')),
    sa.UniqueConstraint('entity', 'key', name=op.f('uq_custom_field_entity_key'))
    )
    op.create_table('reply_template',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('set_status', sa.Enum('new', 'open', 'pending', 'third_party', 'resolved', 'closed', name='ticketstatus', native_enum=False, length=16), nullable=True),
    sa.Column('set_priority', sa.Enum('low', 'normal', 'high', 'urgent', name='ticketpriority', native_enum=False, length=16), nullable=True),
    sa.Column('add_tags', sa.JSON(), nullable=False),
    sa.Column('updated_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reply_template')),
    sa.UniqueConstraint('name', name=op.f('uq_reply_template_name'))
    )
    op.create_table('team',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team')),
    sa.UniqueConstraint('name', name=op.f('uq_team_name'))
    )
    op.create_table('api_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', centrala.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', centrala.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], name=op.f('fk_api_token_agent_id_agent'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_token_token_hash'))
    )
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_token_agent_id'), ['agent_id'], unique=False)

    op.create_table('team_member',
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], name=op.f('fk_team_member_agent_id_agent'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['team.id'], name=op.f('fk_team_member_team_id_team'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', 'agent_id', name=op.f('pk_team_member'))
    )
    with op.batch_alter_table('team_member', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_member_agent_id'), ['agent_id'], unique=False)

    op.create_table('team_queue',
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('queue_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], name=op.f('fk_team_queue_queue_id_queue'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['team.id'], name=op.f('fk_team_queue_team_id_team'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', 'queue_id', name=op.f('pk_team_queue'))
    )
    with op.batch_alter_table('team_queue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_queue_queue_id'), ['queue_id'], unique=False)

    op.create_table('ticket_tag',
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=50), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_ticket_tag_ticket_id_ticket'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ticket_id', 'tag', name=op.f('pk_ticket_tag'))
    )
    with op.batch_alter_table('ticket_tag', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_tag_tag'), ['tag'], unique=False)

    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('custom_fields', sa.JSON(), server_default='{}', nullable=False))

    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.add_column(sa.Column('custom_fields', sa.JSON(), server_default='{}', nullable=False))
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_ticket_merged_into_id_ticket'), 'ticket', ['merged_into_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ticket_merged_into_id_ticket'), type_='foreignkey')
        batch_op.drop_column('merged_into_id')
        batch_op.drop_column('custom_fields')

    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_column('custom_fields')

    with op.batch_alter_table('ticket_tag', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_tag_tag'))

    op.drop_table('ticket_tag')
    with op.batch_alter_table('team_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_team_queue_queue_id'))

    op.drop_table('team_queue')
    with op.batch_alter_table('team_member', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_team_member_agent_id'))

    op.drop_table('team_member')
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_token_agent_id'))

    op.drop_table('api_token')
    op.drop_table('team')
    op.drop_table('reply_template')
    op.drop_table('custom_field')
