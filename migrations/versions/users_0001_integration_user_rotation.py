"""integration users: a rotation schedule for their govern client secret

Revision ID: users_0001
Revises: secrets_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "users_0001"
down_revision = "secrets_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integration_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rotation", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    with op.batch_alter_table("integration_user", schema=None) as batch_op:
        batch_op.alter_column("rotation", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("integration_user", schema=None) as batch_op:
        batch_op.drop_column("rotation")
