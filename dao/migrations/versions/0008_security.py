"""Security: the nonces of WS-Security UsernameTokens already seen (a replay is refused by
every worker and node), and the consumer that made each journalled call.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "security_nonce",
        sa.Column("consumer", sa.String(40), primary_key=True),
        sa.Column("nonce", sa.String(100), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_security_nonce_expires_at", "security_nonce", ["expires_at"])
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("consumer", sa.String(40)))


def downgrade():
    with op.batch_alter_table("journal") as batch:
        batch.drop_column("consumer")
    op.drop_index("ix_security_nonce_expires_at", table_name="security_nonce")
    op.drop_table("security_nonce")
