"""The outbox (store and forward) and its dead letters.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade():
    op.create_table(
        "outbox",
        sa.Column("id", ID, sa.Identity(), primary_key=True),
        sa.Column("msg_id", sa.String(32), nullable=False),
        sa.Column("service", sa.String(40), nullable=False),
        sa.Column("operation", sa.String(40), nullable=False),
        sa.Column("trans_ido", sa.String(32)),
        sa.Column("peer_key", sa.String(40), nullable=False),
        sa.Column("peer_name", sa.String(40), nullable=False),
        sa.Column("province", sa.String(4)),
        sa.Column("order_key", sa.String(60), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.String(1000)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_outbox_status_next", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_order_key", "outbox", ["order_key", "id"])


def downgrade():
    op.drop_table("outbox")
