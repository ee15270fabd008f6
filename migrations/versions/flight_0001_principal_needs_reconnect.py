"""principals: needs_reconnect_at, set when the upstream refuses the stored refresh token (issue #16)

Revision ID: flight_0001
Revises: declog_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "flight_0001"
down_revision = "declog_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("principal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("needs_reconnect_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("principal", schema=None) as batch_op:
        batch_op.drop_column("needs_reconnect_at")
