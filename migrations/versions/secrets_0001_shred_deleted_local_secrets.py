"""local secret store: erase the key material of rows deleted before deletes shredded

Deleting a local secret used to only mark its rows deleted, leaving the ciphertext and the wrapped data
key in place (readable again with the master key). Deletes now erase both; this erases what earlier
deletes (for example `govern secrets migrate --to vault`) left behind.

Revision ID: secrets_0001
Revises: proxy_0002
"""
from alembic import op
import sqlalchemy as sa

revision = "secrets_0001"
down_revision = "proxy_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    local = sa.table("local_secret", sa.column("deleted", sa.Boolean()), sa.column("key_id", sa.String()),
                     sa.column("wrapped_key", sa.LargeBinary()), sa.column("nonce", sa.LargeBinary()),
                     sa.column("ciphertext", sa.LargeBinary()))
    op.execute(local.update().where(local.c.deleted == sa.true())
               .values(key_id="-", wrapped_key=b"", nonce=b"", ciphertext=b""))


def downgrade() -> None:
    pass  # erased key material cannot be restored
