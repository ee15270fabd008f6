"""proxy queues: the caller's source address and token scopes, so a queued call is decided again at delivery

Revision ID: proxy_0002
Revises: upstream_0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "proxy_0002"
down_revision = "upstream_0001"
branch_labels = None
depends_on = None

TABLES = ("queued_call", "dead_letter")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("source_ip", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
            batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("scopes")
            batch_op.drop_column("source_ip")
