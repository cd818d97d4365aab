"""Statistics: the figures `bssbus stats` adds up, in columns of their own, filled as a hop is
journalled: ``amount`` (fen: the AMOUNT of a payment or reversal, of a top-up as its billing
answered it) and ``work_state`` (the WORK_STATE of a work-order report; 3 is done).

No index: the statistics read these columns from the rows the (operation, started_at) and
(status, started_at) indexes of 0011 find. Hops journalled before this revision have neither:
they are counted, but add nothing to a sum and do not count as a completed work order.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("amount", sa.BigInteger()))
        batch.add_column(sa.Column("work_state", sa.String(2)))


def downgrade():
    with op.batch_alter_table("journal") as batch:
        batch.drop_column("work_state")
        batch.drop_column("amount")
