"""Bank reconciliation: a batch a bank file, and the transactions of it that did not balance.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade():
    op.create_table(
        "recon_batch",
        sa.Column("id", ID, sa.Identity(), primary_key=True),
        sa.Column("bank_code", sa.String(10)),
        sa.Column("acct_date", sa.String(8)),
        sa.Column("file_name", sa.String(200), nullable=False),
        sa.Column("md5", sa.String(32)),
        sa.Column("day_key", sa.String(20), unique=True),
        sa.Column("md5_key", sa.String(32), unique=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(1000)),
        *[sa.Column(name, sa.BigInteger) for name in (
            "lines", "amount", "balanced_count", "balanced_sum", "bank_only_count", "bank_only_sum",
            "billing_only_count", "billing_only_sum", "mismatch_count", "mismatch_sum", "unlisted_count",
            "unlisted_sum", "posted", "held")],
        sa.Column("result_file", sa.String(300)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "recon_item",
        sa.Column("id", ID, sa.Identity(), primary_key=True),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("bank_serial", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("txn_time", sa.String(14)),
        sa.Column("msisdn", sa.String(11)),
        sa.Column("province", sa.String(4)),
        sa.Column("bank_amount", sa.BigInteger),
        sa.Column("billing_amount", sa.BigInteger),
        sa.Column("txn_type", sa.String(1), nullable=False),
        sa.Column("orig_serial", sa.String(32)),
        sa.Column("detail", sa.String(300)),
        sa.Column("trans_ido", sa.String(32)),
        sa.Column("msg_id", sa.String(32)),
    )
    op.create_index("ix_recon_item_batch", "recon_item", ["batch_id", "state"])


def downgrade():
    op.drop_index("ix_recon_item_batch", table_name="recon_item")
    op.drop_table("recon_item")
    op.drop_table("recon_batch")
