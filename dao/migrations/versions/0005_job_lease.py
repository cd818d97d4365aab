"""Job leases: a scheduled job runs on one process of the bus at a time.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "job_lease",
        sa.Column("name", sa.String(60), primary_key=True),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True)),
        sa.Column("last_result", sa.String(200)),
    )


def downgrade():
    op.drop_table("job_lease")
