"""The outbox keeps the answer code of a delivered message (a peer may accept a one-way
message and still refuse it with a business code, such as 8888 or 2101).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("rsp_code", sa.String(8)))


def downgrade():
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("rsp_code")
