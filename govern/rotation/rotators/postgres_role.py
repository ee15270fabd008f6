"""PostgreSQL role passwords: `ALTER ROLE name PASSWORD ...`, tested by logging in and checking the verifier.

A role has exactly one password, so there is no overlap at the target: the previous password stops
working at the `set` step. What keeps the integration working is that the new password is already in
the store (pending) before the target changes, and a failed test sets the current one back.

The test does two things. It connects as the role with the new password, which proves the role exists
and may log in; where pg_hba.conf requires password authentication, that alone proves the password.
Because test and development servers often `trust` local connections, it also checks the new password
against the SCRAM-SHA-256 verifier in pg_authid (govern.domain.scram), which proves it with any hba.

The admin connection comes from RotationCollaborators.postgres_admin_url (services.postgres_admin_url) or
GOVERN_ROTATION_POSTGRES_URL.
The password travels in the ALTER ROLE statement text (utility statements take no bind parameters), so
the server must not log statements (log_statement = none or ddl-free); the literal is quoted by psycopg.sql.
"""
from __future__ import annotations

import os

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from govern.domain.scram import verify_postgres_password
from govern.domain.secret import Secret
from govern.rotation.rotators.base import NotConfigured, RotationContext, RotationTestFailed, StoredSecretRotator


def _admin_url(ctx: RotationContext) -> str:
    url = ctx.collaborators.postgres_admin_url or os.environ.get("GOVERN_ROTATION_POSTGRES_URL")
    if not url:
        raise NotConfigured("no PostgreSQL admin connection (GOVERN_ROTATION_POSTGRES_URL)")
    return url.replace("postgresql+psycopg://", "postgresql://")


def set_role_password(admin_url: str, role: str, password: Secret) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password.reveal())))


def role_accepts(admin_url: str, role: str, password: Secret) -> bool:
    """True when `role` can log in with `password` (connect + verifier check, see the module docstring)."""
    params = conninfo_to_dict(admin_url)
    params.update(user=role, password=password.reveal(), connect_timeout=10)
    try:
        with psycopg.connect(make_conninfo("", **params)) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    with psycopg.connect(admin_url, connect_timeout=10) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    return row is not None and verify_postgres_password(password.reveal(), row[0], role)


class PostgresRoleRotator(StoredSecretRotator):
    name = "postgres_role"
    # A role has one password: once `set` ran, only the new one works, so the runner copies it to the
    # secret's own path in the same step (govern.rotation.steps.copy_staged) instead of waiting for `finish`.
    single_secret = True

    def set(self, ctx: RotationContext) -> bool:
        # Idempotent: setting the same password again changes nothing a client can see.
        set_role_password(_admin_url(ctx), ctx.ref.owner, ctx.pending())
        return True

    def test(self, ctx: RotationContext) -> None:
        if not role_accepts(_admin_url(ctx), ctx.ref.owner, ctx.pending()):
            raise RotationTestFailed(f"role {ctx.ref.owner} does not accept the new password")

    def rollback(self, ctx: RotationContext) -> None:
        """After a failed test: put the current password back so the integration keeps working."""
        current = ctx.current()
        if current is not None:
            set_role_password(_admin_url(ctx), ctx.ref.owner, current)
