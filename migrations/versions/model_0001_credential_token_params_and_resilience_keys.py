"""one landscape model: RFC 8707 resource, token_params and leeway on credentials; retry and breaker JSON
rewritten to the keys of govern.domain.resilience (the keys governance.yaml uses)

Before this revision `govern apply` stored `{"attempts", "backoff_seconds"}` and `{"failures", "reset_seconds"}`
while the proxy read `max_attempts`, `base_delay_seconds`, `failure_threshold`, `reset_timeout_seconds`, ...
Both spellings are rewritten to the one the runtime now parses strictly.

Revision ID: model_0001
Revises: auth_0001
"""
from alembic import op
import sqlalchemy as sa

revision = "model_0001"
down_revision = "auth_0001"
branch_labels = None
depends_on = None

RETRY_KEYS = {"attempts": "attempts", "max_attempts": "attempts", "backoff_seconds": "backoff",
              "base_delay_seconds": "backoff", "max_delay_seconds": "max_backoff",
              "max_retry_after_seconds": "max_retry_after", "max_redirects": "redirects"}
BREAKER_KEYS = {"failures": "failures", "failure_threshold": "failures", "reset_seconds": "reset",
                "reset_timeout_seconds": "reset", "window_seconds": "window"}
NEW_RETRY_KEYS = {"attempts", "backoff", "max_backoff", "max_retry_after", "redirects"}
NEW_BREAKER_KEYS = {"failures", "reset", "window"}


def _rename(value, keys: dict, new: set) -> dict:
    out = {}
    for key, item in (value or {}).items():
        if key in new:
            out[key] = item
        elif key in keys:
            out.setdefault(keys[key], item)
        # any other key was never read by anything: dropped
    if "attempts" in out:
        out["attempts"] = max(1, int(out["attempts"]))
    return out


def upgrade() -> None:
    with op.batch_alter_table("external_credential", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("token_params", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column("leeway_seconds", sa.Float(), nullable=True))
    with op.batch_alter_table("external_credential", schema=None) as batch_op:
        batch_op.alter_column("resource", server_default=None)
        batch_op.alter_column("token_params", server_default=None)

    table = sa.table("named_credential", sa.column("id", sa.Integer), sa.column("retry", sa.JSON),
                     sa.column("circuit_breaker", sa.JSON))
    bind = op.get_bind()
    for row in bind.execute(sa.select(table.c.id, table.c.retry, table.c.circuit_breaker)).all():
        retry = _rename(row.retry, RETRY_KEYS, NEW_RETRY_KEYS)
        breaker = _rename(row.circuit_breaker, BREAKER_KEYS, NEW_BREAKER_KEYS)
        if retry != (row.retry or {}) or breaker != (row.circuit_breaker or {}):
            bind.execute(sa.update(table).where(table.c.id == row.id).values(retry=retry, circuit_breaker=breaker))


def downgrade() -> None:
    with op.batch_alter_table("external_credential", schema=None) as batch_op:
        batch_op.drop_column("leeway_seconds")
        batch_op.drop_column("token_params")
        batch_op.drop_column("resource")
