"""audit: the governance.yaml file and line each entity was applied from, so findings point there (issue #19)

Revision ID: audit_0002
Revises: audit_0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "audit_0002"
down_revision = "audit_0001"
branch_labels = None
depends_on = None

TABLES = ("system", "external_credential", "named_credential", "integration_user", "permission_set")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("source_file", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
            batch_op.add_column(sa.Column("source_line", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("source_line")
            batch_op.drop_column("source_file")
