"""CDR distribution: the run that holds a file's row (``run_id``), so a run that lost its row
to another cannot publish, and two runs never share temporary file names.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("cdr_file") as batch:
        batch.add_column(sa.Column("run_id", sa.String(32)))


def downgrade():
    with op.batch_alter_table("cdr_file") as batch:
        batch.drop_column("run_id")
