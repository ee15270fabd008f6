"""upstream broker: refresh journal and single-flight lock rows

Revision ID: upstream_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "upstream_0001"
down_revision = "authz_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refresh_journal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("credential", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("principal", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("old_version", sa.Integer(), nullable=True),
        sa.Column("new_version", sa.Integer(), nullable=True),
        sa.Column("worker", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("attempt_id"),
    )
    with op.batch_alter_table("refresh_journal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refresh_journal_credential"), ["credential"], unique=False)
        batch_op.create_index(batch_op.f("ix_refresh_journal_principal"), ["principal"], unique=False)
        batch_op.create_index(batch_op.f("ix_refresh_journal_state"), ["state"], unique=False)
    op.create_table(
        "upstream_token_lock",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("sealed_token", sa.LargeBinary(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("upstream_token_lock")
    with op.batch_alter_table("refresh_journal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_journal_state"))
        batch_op.drop_index(batch_op.f("ix_refresh_journal_principal"))
        batch_op.drop_index(batch_op.f("ix_refresh_journal_credential"))
    op.drop_table("refresh_journal")
