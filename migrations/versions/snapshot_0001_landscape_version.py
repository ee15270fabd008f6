"""landscape_version: one row whose counter moves with every landscape write; each process reloads its one
snapshot of the landscape when it changes (issue #15, govern.store.landscape_version)

Revision ID: snapshot_0001
Revises: flight_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "snapshot_0001"
down_revision = "flight_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "landscape_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("landscape_version")
