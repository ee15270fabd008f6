"""integration users: `trust:`, the issuers whose tokens stand in for a client secret (workload identity
federation, issue #21; docs/federation.md)

Revision ID: fed_0001
Revises: audit_0002

A plain ADD COLUMN of a nullable JSON column (NULL: no trust), not a batch table rebuild: on SQLite, with foreign
keys on, rebuilding `integration_user` fails once an assignment or a principal refers to a user.
"""
from alembic import op
import sqlalchemy as sa

revision = "fed_0001"
down_revision = "audit_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("integration_user", sa.Column("trust", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integration_user", schema=None) as batch_op:
        batch_op.drop_column("trust")
