"""upstream_revocation: the queue of upstream token revocations (RFC 7009) the worker carries out (issue #21;
docs/offboarding.md). Rows name where a token lives (a secret reference, token-cache keys), never a token.

Revision ID: revq_0001
Revises: cond_0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "revq_0001"
down_revision = "cond_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_revocation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("credential", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("principal", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("integration_user", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("token_type", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("location", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("upstream_revocation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upstream_revocation_credential"), ["credential"], unique=False)
        batch_op.create_index(batch_op.f("ix_upstream_revocation_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_upstream_revocation_next_attempt_at"), ["next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("upstream_revocation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upstream_revocation_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_upstream_revocation_status"))
        batch_op.drop_index(batch_op.f("ix_upstream_revocation_credential"))
    op.drop_table("upstream_revocation")
