"""The cut-over table: each province's phase, and the audit of every change.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade():
    op.create_table(
        "province_phase",
        sa.Column("province", sa.String(4), primary_key=True),
        sa.Column("phase", sa.Integer, nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "phase_change",
        sa.Column("id", ID, sa.Identity(), primary_key=True),
        sa.Column("province", sa.String(4), nullable=False),
        sa.Column("old_phase", sa.Integer),
        sa.Column("new_phase", sa.Integer, nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(200)),
    )
    op.create_index("ix_phase_change_province", "phase_change", ["province"])


def downgrade():
    op.drop_table("phase_change")
    op.drop_table("province_phase")
