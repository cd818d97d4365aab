"""Journal search: the business keys (``serial``: BANK_SERIAL or TOPUP_SERIAL; ``order_id``)
in columns of their own, and the indexes that answer `bssbus journal search` and `journal
trace` on a large journal (by peer, status, service, operation, direction, newest first; the outbox
rows of a message).

Rows journalled before this revision have no business keys; they are still found by their
number, TRANS_IDO or PROC_ID.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_journal_serial", "journal", ["serial"]),
    ("ix_journal_order_id", "journal", ["order_id"]),
    ("ix_journal_target_started", "journal", ["target", "started_at"]),
    ("ix_journal_status_started", "journal", ["status", "started_at"]),
    ("ix_journal_service_started", "journal", ["service", "started_at"]),
    ("ix_journal_op_started", "journal", ["operation", "started_at"]),
    ("ix_journal_dir_started", "journal", ["direction", "started_at"]),
    ("ix_outbox_msg_id", "outbox", ["msg_id"]),
)


def upgrade():
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("serial", sa.String(32)))
        batch.add_column(sa.Column("order_id", sa.String(32)))
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("journal") as batch:
        batch.drop_column("order_id")
        batch.drop_column("serial")
