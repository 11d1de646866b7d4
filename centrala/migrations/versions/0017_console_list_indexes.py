"""console list indexes

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-23

The console's lists read newest first (all tickets, one queue's, one agent's open work) and its "breaching soon"
reads running clocks nearest due first. The single-column indexes on the ticket's contact_id, assignee_id and
queue_id are replaced by composite ones that lead with the same column, and the clocks' (state, due_at) index
gains id, so that it gives a total order.
"""

from alembic import op
import sqlalchemy as sa

import centrala.core.db  # noqa: F401  (column types some migrations use)


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sla_clock', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sla_clock_state_due_at'))
        batch_op.create_index(batch_op.f('ix_sla_clock_state_due_at_id'), ['state', 'due_at', 'id'], unique=False)

    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_assignee_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_contact_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_queue_id'))
        batch_op.create_index(batch_op.f('ix_ticket_assignee_id_status_updated_at'), ['assignee_id', 'status', 'updated_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_queue_id_updated_at_id'), ['queue_id', 'updated_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_updated_at_id'), ['updated_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_updated_at_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_queue_id_updated_at_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_assignee_id_status_updated_at'))
        batch_op.create_index(batch_op.f('ix_ticket_queue_id'), ['queue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_assignee_id'), ['assignee_id'], unique=False)

    with op.batch_alter_table('sla_clock', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sla_clock_state_due_at_id'))
        batch_op.create_index(batch_op.f('ix_sla_clock_state_due_at'), ['state', 'due_at'], unique=False)
