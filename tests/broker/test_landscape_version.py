"""The stored landscape version (govern.store.landscape_version) moves with every kind of write that changes
what the one snapshot holds, in the writer's own transaction, whoever the writer is: `govern apply`, POST
/api/v1/apply, the console's commands, the secrets API and CLI, a refresh-token rotation. It does not move for
writes the snapshot does not read (a token request's last_used_at), for an apply that changes nothing, or for
a write that is rolled back. And the snapshot of a process follows it."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from govern.store import landscape_version

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
