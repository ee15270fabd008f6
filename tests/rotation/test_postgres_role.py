"""The PostgreSQL role rotator against the real server: crash safety and a failing test step.

The server trusts 127.0.0.1 (pg_hba.conf), so logging in proves nothing about the password; the
rotator and these checks also verify the password against the SCRAM verifier in pg_authid.
"""
from __future__ import annotations

import pytest
from sqlmodel import select

from govern.domain.secret import Secret
from govern.rotation import machine
from govern.rotation.rotators.postgres_role import PostgresRoleRotator, role_accepts, set_role_password
from govern.rotation.wiring import rotation_service
from govern.store.db import session_scope
from govern.store.tables import RotationRun, SecretRef, SecretVersion
from tests.rotation.conftest import add_secret, build
from tests.rotation.pg_roles import admin_url, pg_roles  # noqa: F401

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_services(tmp_path, postgres_url, clock, notifier):
    from govern.config import load_settings

    home = tmp_path / "instance"
    home.mkdir()
    settings = load_settings({}, home=home, database_url=postgres_url, log_level="DEBUG")
    # The real LocalSecretStore on the same PostgreSQL database: what a deployment without Vault runs.
    svc = build(settings, clock, notifier, real_store=True, postgres_admin_url=admin_url())
    from govern.secrets.local import LocalSecretStore

    assert isinstance(svc.secret_store, LocalSecretStore)
    yield svc
    svc.close()


def stored_login_works(services, role: str, path: str) -> bool:
    """True when at least one version govern holds for the role is accepted by PostgreSQL."""
    store = services.secret_store
    return any(role_accepts(admin_url(), role, store.get(path, version=v)) for v in store.metadata(path).versions)


class Crash(BaseException):
    pass


@pytest.mark.parametrize("point", ["before_persist", "after_step"])
@pytest.mark.parametrize("crash_step", machine.STEPS)
def test_crash_after_each_step_keeps_the_role_usable(pg_services, pg_roles, clock, point, crash_step):  # noqa: F811
    initial = "initial-" + crash_step
    role = pg_roles(initial)
    ref_id = add_secret(pg_services, role, rotator="postgres_role", owner_kind="postgres_role", owner=role,
                        initial=initial)
    path = f"rotation-test/{role}"
    checks = []
    crashed = []

    def hook(p, run_id, step):
        ok = stored_login_works(pg_services, role, path)
        checks.append((p, step, ok))
        if p == point and step == crash_step and not crashed:
            crashed.append(step)
            raise Crash()

    with pytest.raises(Crash):
        rotation_service(pg_services, worker_id="w1", hook=hook).tick()
    assert stored_login_works(pg_services, role, path)
    clock.advance(seconds=121)  # the dead worker's lease runs out
    rotation_service(pg_services, worker_id="w2", hook=hook).drain()
    assert checks and all(ok for _, _, ok in checks), checks

    with session_scope(pg_services.sessions) as s:
        (run,) = s.execute(select(RotationRun).where(RotationRun.secret_ref_id == ref_id)).scalars().all()
        ref = s.get(SecretRef, ref_id)
        stages = {v.version: v.stage for v in s.execute(select(SecretVersion).where(SecretVersion.secret_ref_id == ref_id)).scalars()}
    assert run.state == machine.FINISHED
    assert ref.current_version == 2 and stages == {1: "previous", 2: "current"}
    current = pg_services.secret_store.get(path, version=ref.current_version)
    assert role_accepts(admin_url(), role, current)
    assert not role_accepts(admin_url(), role, Secret(initial))


class MisappliedSet(PostgresRoleRotator):
    """A target that reports success but keeps a different password: the test step must catch it."""

    name = "misapplied"

    def set(self, ctx):
        from govern.rotation.rotators.postgres_role import _admin_url

        set_role_password(_admin_url(ctx), ctx.ref.owner, Secret("not-the-pending-one"))
        return True


def test_failing_test_step_keeps_the_current_secret_working(pg_services, pg_roles, notifier):  # noqa: F811
    role = pg_roles("the-current-one")
    ref_id = add_secret(pg_services, role, rotator="misapplied", owner_kind="postgres_role", owner=role,
                        initial="the-current-one")
    svc = rotation_service(pg_services, worker_id="w1")
    svc._rotators["misapplied"] = MisappliedSet()
    (outcome,) = svc.tick()
    assert outcome.status == "retrying" and outcome.failed
    assert "test failed" in outcome.detail and "rotation_test_failed" in outcome.detail
    with session_scope(pg_services.sessions) as s:
        run = s.execute(select(RotationRun).where(RotationRun.secret_ref_id == ref_id)).scalar_one()
        ref = s.get(SecretRef, ref_id)
    assert run.state == machine.PENDING and run.attempts == 1 and "rotation_test_failed" in run.error
    assert ref.current_version == 1
    # The current secret is back in place at the target, and it is the one govern serves.
    assert role_accepts(admin_url(), role, pg_services.secret_store.get(f"rotation-test/{role}", version=1))
    assert not role_accepts(admin_url(), role, Secret("not-the-pending-one"))
    assert notifier.names() == ["rotation.failed"]
    assert "the-current-one" not in repr(notifier.events) and "the-current-one" not in (run.error or "")


def test_identifier_is_quoted(pg_services, pg_roles):  # noqa: F811
    """A role name that needs quoting (and would be an injection if spliced in raw)."""
    import psycopg
    from psycopg import sql

    role = pg_roles("x")
    odd = role + '"; DROP ROLE postgres; --'
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} RENAME TO {}").format(sql.Identifier(role), sql.Identifier(odd)))
    try:
        set_role_password(admin_url(), odd, Secret("quoted-ok"))
        assert role_accepts(admin_url(), odd, Secret("quoted-ok"))
    finally:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(odd)))
