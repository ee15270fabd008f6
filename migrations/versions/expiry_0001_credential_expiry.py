"""credentials: `expiry`, the declared client-secret expiry date and refresh-token lifetimes (expiry forecasting,
issue #21; docs/expiry.md)

Revision ID: expiry_0001
Revises: fed_0001

A plain ADD COLUMN with a server default (existing credentials declare nothing: `{}`), not a batch rebuild: on
SQLite, with foreign keys on, rebuilding `external_credential` fails once principals refer to it.
"""
from alembic import op
import sqlalchemy as sa

revision = "expiry_0001"
down_revision = "fed_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("external_credential", sa.Column("expiry", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("external_credential", schema=None) as batch_op:
        batch_op.drop_column("expiry")
