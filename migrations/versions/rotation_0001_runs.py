"""rotation: system key and one-active-run guard on rotation_run, per-system concurrency caps

Revision ID: rotation_0001
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "rotation_0001"
down_revision = "0001"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("state NOT IN ('finished', 'parked', 'cancelled')")


def upgrade() -> None:
    with op.batch_alter_table("rotation_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("system_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True))
        batch_op.alter_column("state", existing_type=sqlmodel.sql.sqltypes.AutoString(length=20),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=30), existing_nullable=False)
        batch_op.create_index(batch_op.f("ix_rotation_run_system_key"), ["system_key"], unique=False)
    op.create_index("uq_rotation_run_active_secret", "rotation_run", ["secret_ref_id"], unique=True,
                    postgresql_where=_ACTIVE, sqlite_where=_ACTIVE)
    op.create_table(
        "rotation_system_cap",
        sa.Column("system_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("system_key"),
    )


def downgrade() -> None:
    op.drop_table("rotation_system_cap")
    op.drop_index("uq_rotation_run_active_secret", table_name="rotation_run")
    with op.batch_alter_table("rotation_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rotation_run_system_key"))
        batch_op.alter_column("state", existing_type=sqlmodel.sql.sqltypes.AutoString(length=30),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=20), existing_nullable=False)
        batch_op.drop_column("system_key")
