"""signing_key: govern's access-token signing keys (public half and a secret-store reference)

Revision ID: authz_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "authz_0001"
down_revision = "rotation_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("alg", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("secret_path", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retire_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("signing_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signing_key_kid"), ["kid"], unique=True)
        batch_op.create_index(batch_op.f("ix_signing_key_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signing_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_key_state"))
        batch_op.drop_index(batch_op.f("ix_signing_key_kid"))
    op.drop_table("signing_key")
