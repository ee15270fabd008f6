"""audit: imported Salesforce orgs kept as sources, the source of each finding, the report of each run (issue #19)

Revision ID: audit_0001
Revises: snapshot_0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "audit_0001"
down_revision = "snapshot_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "salesforce_import",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("directory", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("root", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("files_imported", sa.Integer(), nullable=False),
        sa.Column("files_skipped", sa.Integer(), nullable=False),
        sa.Column("files_failed", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("model", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_salesforce_import_name"), "salesforce_import", ["name"], unique=True)
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.create_index(batch_op.f("ix_finding_source"), ["source"], unique=False)
    with op.batch_alter_table("audit_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sources", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("report", sa.JSON(), nullable=True))
    # a finding's source was its last run's source
    op.execute("UPDATE finding SET source = (SELECT audit_run.source FROM audit_run "
               "WHERE audit_run.id = finding.last_run_id)")


def downgrade() -> None:
    with op.batch_alter_table("audit_run", schema=None) as batch_op:
        batch_op.drop_column("report")
        batch_op.drop_column("sources")
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finding_source"))
        batch_op.drop_column("source")
    op.drop_index(op.f("ix_salesforce_import_name"), table_name="salesforce_import")
    op.drop_table("salesforce_import")
