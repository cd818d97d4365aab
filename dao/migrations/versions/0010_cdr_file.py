"""CDR distribution: one row a CDR file, keyed by file name + MD5, with the state of its
distribution (splitting -> publishing -> done).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade():
    op.create_table(
        "cdr_file",
        sa.Column("id", ID, sa.Identity(), primary_key=True),
        sa.Column("file_name", sa.String(200), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("source_path", sa.String(1000), nullable=False),
        sa.Column("out_dir", sa.String(1000), nullable=False),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("run_id", sa.String(32)),   # the run that holds the row (its temporary names carry it)
        sa.Column("records", sa.BigInteger),
        sa.Column("rejects", sa.BigInteger),
        sa.Column("summary", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("file_name", "md5", name="uq_cdr_file_name_md5"),
    )
    op.create_index("ix_cdr_file_md5", "cdr_file", ["md5"])


def downgrade():
    op.drop_index("ix_cdr_file_md5", table_name="cdr_file")
    op.drop_table("cdr_file")
