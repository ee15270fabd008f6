"""shared_state: the Cache port in the database when no Redis is configured (issue #16)

Revision ID: state_0001
Revises: users_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "state_0001"
down_revision = "users_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shared_state",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_shared_state_expires_at", "shared_state", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_shared_state_expires_at", table_name="shared_state")
    op.drop_table("shared_state")
