"""decision log: an outcome per record (allow, deny, error), the HMAC key id of each record, the key
table and signed checkpoints of the chain's head

Existing records get outcome "deny" when they were refused, "error" when they were allowed but the
upstream answered 5xx, "allow" otherwise; their key_id stays NULL (they stay verifiable with plain
SHA-256, as they were written).

Revision ID: declog_0001
Revises: model_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "declog_0001"
down_revision = "model_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=10), nullable=False, server_default="deny"))
        batch_op.add_column(sa.Column("error_code", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))
    op.execute("UPDATE decision SET outcome = CASE WHEN NOT allowed THEN 'deny' "
               "WHEN upstream_status >= 500 THEN 'error' ELSE 'allow' END")
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.alter_column("outcome", server_default=None)
        batch_op.create_index(batch_op.f("ix_decision_outcome"), ["outcome"], unique=False)
    op.create_table(
        "decision_log_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("secret_path", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid"),
    )
    op.create_table(
        "decision_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("head_id", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("decision_checkpoint", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decision_checkpoint_head_id"), ["head_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("decision_checkpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decision_checkpoint_head_id"))
    op.drop_table("decision_checkpoint")
    op.drop_table("decision_log_key")
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decision_outcome"))
        batch_op.drop_column("key_id")
        batch_op.drop_column("error_code")
        batch_op.drop_column("outcome")
