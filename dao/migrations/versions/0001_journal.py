"""The journal: one row a hop of a message.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade():
    op.create_table(
        "journal",
        sa.Column("id", ID, sa.Identity(), primary_key=True),
        sa.Column("msg_id", sa.String(32), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("service", sa.String(40)),
        sa.Column("operation", sa.String(40)),
        sa.Column("trans_ido", sa.String(32)),
        sa.Column("proc_id", sa.String(40)),
        sa.Column("msisdn", sa.String(20)),
        sa.Column("province", sa.String(4)),
        sa.Column("source", sa.String(40)),
        sa.Column("target", sa.String(40)),
        sa.Column("route", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rsp_code", sa.String(10)),
        sa.Column("fault_code", sa.String(40)),
        sa.Column("error", sa.String(1000)),
        sa.Column("request", sa.LargeBinary),
        sa.Column("response", sa.LargeBinary),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("elapsed_ms", sa.Float),
    )
    for col in ("trans_ido", "proc_id", "msisdn", "msg_id", "started_at"):
        op.create_index(f"ix_journal_{col}", "journal", [col])


def downgrade():
    op.drop_table("journal")
