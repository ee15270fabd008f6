"""The stored landscape version (govern.store.landscape_version) moves with every kind of write that changes
what the one snapshot holds, in the writer's own transaction, whoever the writer is: `govern apply`, POST
/api/v1/apply, the console's commands, the secrets API and CLI, a refresh-token rotation. It does not move for
writes the snapshot does not read (a token request's last_used_at), for an apply that changes nothing, or for
a write that is rolled back. And the snapshot of a process follows it."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from govern.broker.landscape import BOUND, CHECK_INTERVAL, LandscapeCache, LandscapeUnavailable
from govern.store import landscape_version
from govern.store.landscape_snapshot import LandscapeSnapshots
from tests.proxy.fakes import FakeClock

LANDSCAPE = """\
apiVersion: govern/v1
systems:
  - id: erp
    scopes: [orders.read, orders.write]
credentials:
  - id: erp-cc
    system: erp
    protocol: oauth2_client_credentials
    token_url: https://erp.example/token
    client_id: erp-client
    scopes: [orders.read]
    principals: [{name: default}]
  - id: erp-key
    system: erp
    protocol: api_key_header
    header: X-Api-Key
    principals: [{name: default}]
named_credentials:
  - id: erp-api
    credential: erp-cc
    url: https://erp.example/api
  - id: erp-keyed
    credential: erp-key
    url: https://erp.example/keyed
integration_users:
  - id: order-sync
    ip_ranges: [127.0.0.0/8]
    scopes: [orders.read]
    permission_sets: [orders]
permission_sets:
  - id: orders
    scopes: [orders.read]
    grants:
      - named_credential: erp-api
        principal: default
  - id: extra
    scopes: [orders.read]
"""


def stored(services) -> int:
    with services.engine.connect() as conn:
        return landscape_version.read_version(conn)


@pytest.fixture
def applied(runner, tmp_path, services):
    path = tmp_path / "governance.yaml"
    path.write_text(LANDSCAPE)
    before = stored(services)
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output
    assert stored(services) > before
    return path


def moves(services, write) -> bool:
    before = stored(services)
    write()
    return stored(services) > before


def test_the_migration_writes_the_one_row(services):
    with services.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, version FROM landscape_version")).all()
    assert [r[0] for r in rows] == [1]


def test_govern_apply_moves_it_and_an_unchanged_apply_does_not(services, runner, applied):
    again = lambda: runner.invoke(["apply", "-f", str(applied)])  # noqa: E731
    assert not moves(services, again)
    suspended = applied.read_text().replace("  - id: order-sync\n", "  - id: order-sync\n    status: suspended\n")
    applied.write_text(suspended)
    assert moves(services, again)
    narrowed = suspended.replace("url: https://erp.example/api", "url: https://erp.example/v2")
    applied.write_text(narrowed)
    assert moves(services, again)
    assert not moves(services, lambda: runner.invoke(["apply", "-f", str(applied), "--dry-run"]))


def test_the_apply_api_moves_it(services, client, admin_token, applied):
    body = applied.read_text().replace("scopes: [orders.read]\n    permission_sets", "scopes: []\n    permission_sets")

    def post():
        r = client.post("/api/v1/apply", data=body, content_type="application/yaml",
                        headers={"Authorization": f"Bearer {admin_token}"})
        assert r.status_code == 200, r.get_data(as_text=True)

    assert moves(services, post)


def test_console_commands_move_it(services, applied):
    from govern.admin import commands

    assert moves(services, lambda: commands.set_user_status(services, "root-admin", "order-sync", "suspended"))
    assert moves(services, lambda: commands.set_user_status(services, "root-admin", "order-sync", "active"))
    assert moves(services, lambda: commands.assign_permission_set(services, "root-admin", "order-sync", "extra"))
    assert moves(services, lambda: commands.unassign_permission_set(services, "root-admin", "order-sync", "extra"))


def test_secret_puts_deletes_and_rotations_move_it(services, client, admin_token, runner, applied):
    from govern.broker.upstream.secret_refs import CredentialSecrets
    from govern.store.credential_secret_refs import CredentialSecretRefRepo
    from govern.domain.secret import Secret

    auth = {"Authorization": f"Bearer {admin_token}"}
    assert moves(services, lambda: runner.invoke(["secrets", "put", "erp-key", "--field", "api_key"],
                                                 input="first-api-key"))
    assert moves(services, lambda: client.put("/api/v1/credentials/erp-key/secrets/api_key", json={"value": "second"},
                                              headers=auth))
    secrets = CredentialSecrets(CredentialSecretRefRepo(services.sessions), services.secret_store, services.clock)
    current = secrets.current("erp-key", None, "api_key")
    assert current is not None and current.value.reveal() == "second"
    assert moves(services, lambda: secrets.replace("erp-key", None, "api_key", Secret("third"),
                                                   expected_version=current.version))
    assert moves(services, lambda: client.delete("/api/v1/credentials/erp-key/secrets/api_key", headers=auth))


def test_a_token_request_does_not_move_it(services, client, runner, applied):
    put = runner.invoke(["secrets", "put", "--user", "order-sync", "--field", "client_secret"],
                        input="order-sync-client-secret")
    assert put.exit_code == 0, put.output

    def token():
        r = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                        auth=("order-sync", "order-sync-client-secret"))
        assert r.status_code == 200, r.get_data(as_text=True)

    assert not moves(services, token)  # last_used_at was written, and nothing the snapshot reads
    with services.sessions() as s:
        assert s.execute(sa.text("SELECT last_used_at FROM integration_user WHERE external_id = 'order-sync'")).scalar()


def test_a_rolled_back_write_does_not_move_it(services, applied):
    from govern.store.db import session_scope
    from govern.store.tables import IntegrationUser

    def fails():
        with pytest.raises(RuntimeError), session_scope(services.sessions) as s:
            s.execute(sa.update(IntegrationUser).values(status="suspended"))
            raise RuntimeError("the writer fails after its statement")

    assert not moves(services, fails)


def test_the_snapshot_follows_the_stored_version(services, runner, applied):
    landscape = services.landscape
    snap = landscape.current()
    assert snap.version == stored(services) and snap.users["order-sync"].status == "active"
    assert snap.proxy_target("erp-api").url == "https://erp.example/api"
    assert snap.upstream_target("erp-api", None).principal == "default"
    assert landscape.current() is snap  # nothing changed: the same snapshot, no rebuild
    applied.write_text(applied.read_text().replace("  - id: order-sync\n", "  - id: order-sync\n    status: suspended\n")
                       .replace("url: https://erp.example/api", "url: https://erp.example/v2"))
    assert runner.invoke(["apply", "-f", str(applied)]).exit_code == 0
    now = landscape.current()  # a commit in this process: seen by its next read, whatever the interval
    assert now is not snap and now.version == stored(services)
    assert now.users["order-sync"].status == "suspended" and now.proxy_target("erp-api").url == "https://erp.example/v2"


# --- the snapshot rebuilds off the request path, within the bound ----------------------------------------------
# A change made by another process (a real `govern apply` process); the cache on an injected clock. The
# background refresh runs where the test says: `spawn` collects it, or a source holds it inside its read until
# the test releases it. No test waits for time to pass.

ROOT = Path(__file__).resolve().parents[2]


def apply_in_another_process(settings, path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
    env.update(GOVERN_HOME=str(settings.home), GOVERN_DATABASE_URL=settings.database_url, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "govern", "apply", "-f", str(path)], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])


def suspend(path: Path) -> None:
    path.write_text(path.read_text().replace("  - id: order-sync\n", "  - id: order-sync\n    status: suspended\n"))


class HeldSource:
    """The real repository, whose next read, once `hold()` is called, waits inside until `release`."""

    def __init__(self, sessions):
        self._store = LandscapeSnapshots(sessions)
        self.loads = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self._held = False

    def hold(self) -> None:
        self._held = True

    def local_commits(self) -> int:
        return self._store.local_commits()

    def load(self, known_version):
        self.loads += 1
        if self._held:
            self._held = False
            self.entered.set()
            assert self.release.wait(60)
        return self._store.load(known_version)


def returns_without_waiting(call):
    """call() in a thread; if it waited for the held refresh it would not come back (guarded, not timed)."""
    out: list = []
    worker = threading.Thread(target=lambda: out.append(call()), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the request waited for the rebuild"
    return out[0]


def test_inside_the_bound_one_background_refresh_rebuilds_and_requests_keep_the_snapshot(services, settings, applied):
    clock, pending = FakeClock(), []
    cache = LandscapeCache(services.sessions, clock, spawn=pending.append)
    old = cache.current()
    suspend(applied)
    apply_in_another_process(settings, applied)
    assert cache.current() is old and pending == []  # inside the check interval: no read at all
    clock.advance(CHECK_INTERVAL)
    assert cache.current() is old and len(pending) == 1  # a refresh is started, and not waited for
    clock.advance(BOUND - CHECK_INTERVAL - 0.01)
    assert cache.current() is old and len(pending) == 1  # one at a time
    pending.pop()()  # the background refresh: reads the version, rebuilds
    new = cache.current()
    assert new is not old and new.users["order-sync"].status == "suspended" and cache.builds == 2
    assert new.version == stored(services)


def test_past_the_bound_a_request_waits_for_a_fresh_read(services, settings, applied):
    clock, pending = FakeClock(), []
    cache = LandscapeCache(services.sessions, clock, spawn=pending.append)
    old = cache.current()
    suspend(applied)
    apply_in_another_process(settings, applied)
    clock.advance(BOUND)
    new = cache.current()  # no background refresh: this request read and rebuilt
    assert pending == [] and new is not old and new.users["order-sync"].status == "suspended"


def test_requests_past_the_bound_wait_for_the_refresh_in_flight_not_for_a_second_one(services, settings, applied):
    clock = FakeClock()
    source = HeldSource(services.sessions)
    cache = LandscapeCache(services.sessions, clock, source=source)  # background refreshes in real threads
    old = cache.current()
    suspend(applied)
    apply_in_another_process(settings, applied)
    source.hold()
    clock.advance(CHECK_INTERVAL)
    assert returns_without_waiting(cache.current) is old  # the refresh it started is held inside its read
    assert source.entered.wait(30)
    clock.advance(BOUND - CHECK_INTERVAL)  # the snapshot is BOUND old: callers wait, for the refresh in flight
    results: list = []
    waiters = [threading.Thread(target=lambda: results.append(cache.current())) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    source.release.set()
    for waiter in waiters:
        waiter.join(30)
    assert len(results) == 3 and all(r is results[0] for r in results)
    assert results[0].users["order-sync"].status == "suspended"
    assert source.loads == 2 and cache.builds == 2  # the first build, and the one refresh


def test_a_commit_of_this_process_is_seen_by_its_next_request_even_during_a_background_refresh(
        services, runner, applied):
    clock = FakeClock()
    source = HeldSource(services.sessions)
    cache = LandscapeCache(services.sessions, clock, source=source)
    old = cache.current()
    source.hold()
    clock.advance(CHECK_INTERVAL)
    assert returns_without_waiting(cache.current) is old
    assert source.entered.wait(30)  # a refresh that began before the commit below is reading
    suspend(applied)
    assert runner.invoke(["apply", "-f", str(applied)]).exit_code == 0  # this process commits
    results: list = []
    waiter = threading.Thread(target=lambda: results.append(cache.current()))
    waiter.start()
    source.release.set()
    waiter.join(30)
    assert results[0].users["order-sync"].status == "suspended"
    assert source.loads == 3  # the held refresh began before the commit: the next request waited for another


def test_a_database_outage_during_a_background_refresh_keeps_the_snapshot_then_fails_closed(services, monkeypatch):
    clock, pending = FakeClock(), []
    cache = LandscapeCache(services.sessions, clock, spawn=pending.append, degraded_for=60)
    old = cache.current()

    def unreadable(connection):
        raise sa.exc.OperationalError("SELECT version FROM landscape_version", {}, Exception("database is down"))

    monkeypatch.setattr("govern.store.landscape_version.read_version", unreadable)
    clock.advance(CHECK_INTERVAL)
    assert cache.current() is old
    pending.pop()()  # fails
    assert cache.current() is old and pending == []  # not asked again at once
    clock.advance(BOUND)
    assert cache.current() is old  # past the bound, the read fails again: degraded, the last snapshot
    clock.advance(60)
    with pytest.raises(LandscapeUnavailable):
        cache.current()
    monkeypatch.undo()
    clock.advance(CHECK_INTERVAL)
    assert cache.current() is old  # the database is back: the same version, no rebuild
    assert cache.builds == 1


def test_a_forked_child_does_not_wait_for_the_parents_refresh_thread(services, settings, applied):
    """A process forked while a background refresh runs (gunicorn forks workers) has no such thread: its first
    request past the bound reads the database itself instead of waiting forever."""
    import signal

    clock = FakeClock()
    source = HeldSource(services.sessions)
    cache = LandscapeCache(services.sessions, clock, source=source)
    old = cache.current()
    suspend(applied)
    apply_in_another_process(settings, applied)
    source.hold()
    clock.advance(CHECK_INTERVAL)
    assert returns_without_waiting(cache.current) is old
    assert source.entered.wait(30)  # the parent's refresh thread is inside its read
    pid = os.fork()
    if pid == 0:  # the child: a guard, not a timing (SIGALRM ends a child that waits forever)
        signal.alarm(60)
        try:
            services.engine.dispose(close=False)  # the parent's pooled connections stay the parent's
            clock.advance(BOUND)
            snap = cache.current()
            os._exit(0 if snap.users["order-sync"].status == "suspended" else 3)
        except BaseException:  # noqa: BLE001 - any failure is the child's exit status
            os._exit(4)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        source.release.set()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
