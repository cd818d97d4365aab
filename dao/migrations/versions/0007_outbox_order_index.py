"""The outbox's order index holds the status too: "is an older message of this user still
pending or dead?" is answered from the index alone, whatever the planner's statistics say
(PostgreSQL, with statistics from before a burst, combined two indexes and took seconds
for a backlog of 10,000).

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_outbox_order_key", table_name="outbox")
    op.create_index("ix_outbox_order_key", "outbox", ["order_key", "status", "id"])


def downgrade():
    op.drop_index("ix_outbox_order_key", table_name="outbox")
    op.create_index("ix_outbox_order_key", "outbox", ["order_key", "id"])
