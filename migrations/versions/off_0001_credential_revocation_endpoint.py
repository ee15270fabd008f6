"""credentials: `revocation_endpoint:` and its client authentication (RFC 7009), used by `govern offboard`
(issue #21; docs/offboarding.md)

Revision ID: off_0001
Revises: fed_0001

Plain ADD COLUMNs of nullable columns (NULL: no revocation endpoint; the token endpoint's client authentication).
"""
from alembic import op
import sqlalchemy as sa

revision = "off_0001"
down_revision = "expiry_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("external_credential", sa.Column("revocation_url", sa.String(length=1000), nullable=True))
    op.add_column("external_credential", sa.Column("revocation_auth_method", sa.String(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("external_credential", schema=None) as batch_op:
        batch_op.drop_column("revocation_auth_method")
        batch_op.drop_column("revocation_url")
