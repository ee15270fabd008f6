"""seen_client_assertion: single-use private_key_jwt assertions (jti) across processes without Redis

Revision ID: auth_0001
Revises: state_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "auth_0001"
down_revision = "state_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_client_assertion",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_seen_client_assertion_expires_at"), "seen_client_assertion", ["expires_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_seen_client_assertion_expires_at"), table_name="seen_client_assertion")
    op.drop_table("seen_client_assertion")
