"""permission sets: `conditions:`, the time windows, request rate and source ranges under which their grants hold
(access conditions, issue #21; docs/access-conditions.md)

Revision ID: cond_0001
Revises: fed_0001

A plain ADD COLUMN of a nullable JSON column (NULL: no conditions), as fed_0001 does for the same reason: on SQLite,
with foreign keys on, a batch rebuild of `permission_set` fails once a grant or an assignment refers to it.
"""
from alembic import op
import sqlalchemy as sa

revision = "cond_0001"
down_revision = "off_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("permission_set", sa.Column("conditions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("permission_set", schema=None) as batch_op:
        batch_op.drop_column("conditions")
