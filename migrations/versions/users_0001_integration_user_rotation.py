"""integration users: a rotation schedule for their govern client secret

Revision ID: users_0001
Revises: secrets_0001

A plain ADD COLUMN with a server default, not a batch (copy-and-move) table rebuild: on SQLite, with
foreign keys on, rebuilding `integration_user` fails as soon as an assignment or a principal refers to a
user, which is every instance in use. The default stays on the column (the ORM always writes the value).
"""
from alembic import op
import sqlalchemy as sa

revision = "users_0001"
down_revision = "secrets_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("integration_user",
                  sa.Column("rotation", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("integration_user", schema=None) as batch_op:
        batch_op.drop_column("rotation")
