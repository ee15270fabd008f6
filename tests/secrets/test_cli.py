"""`govern secrets put|status|rotate-key` (migrate: test_migrate.py)."""
from __future__ import annotations

import pytest
from sqlmodel import select

from govern.domain.secret import MAX_SECRET_BYTES
from govern.secrets.keys import key_file_path, load_keyring
from govern.store.tables import LocalSecret, SecretRef
from tests.factories import make_landscape


@pytest.fixture
def landscape(services):
    return make_landscape(services, client_secret=None)


def test_put_from_stdin_and_from_a_file_then_status(runner, landscape, services, tmp_path):
    r = runner.invoke(["secrets", "put", "erp-cc", "--field", "client_secret"], input="from-stdin\n")
    assert r.exit_code == 0, r.output
    assert "credential/erp-cc/client_secret: set on " in r.output and "version 1" in r.output
    value_file = tmp_path / "v.txt"
    value_file.write_text("from-a-file")
    r = runner.invoke(["secrets", "put", "erp-cc", "--field", "client_secret", "--file", str(value_file)])
    assert r.exit_code == 0 and "version 2" in r.output
    assert services.secret_store.get("credential/erp-cc/client_secret").reveal() == "from-a-file"
    r = runner.invoke(["secrets", "put", "--user", "order-sync", "--field", "client_secret"], input="user-secret")
    assert r.exit_code == 0 and "integration_user/order-sync/client_secret" in r.output
    r = runner.invoke(["secrets", "status"])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].split() == ["REF", "STORE", "VERSION", "SET", "ON"]
    assert any(line.startswith("credential/erp-cc/client_secret") and " local " in line and " 2 " in line
               for line in lines)
    assert "from-a-file" not in r.output and "user-secret" not in r.output


@pytest.mark.parametrize("args, stdin, message", [
    (["nope", "--field", "client_secret"], "v", "error: unknown credential 'nope'"),
    (["erp-cc", "--principal", "ghost", "--field", "client_secret"], "v", "error: credential 'erp-cc' has no principal 'ghost'"),
    (["erp-cc", "--field", "password"], "v", "error: field: unknown field 'password' for a oauth2_client_credentials credential"),
    (["erp-cc", "--field", "client_secret"], "\n", "error: the secret is empty"),
    (["erp-cc", "--field", "client_secret"], "x" * (MAX_SECRET_BYTES + 1), "error: the secret is larger than 64 KiB"),
    (["--user", "ghost", "--field", "client_secret"], "v", "error: unknown integration user 'ghost'"),
    (["--field", "client_secret"], "v", "error: name either a CREDENTIAL or --user USER"),
])
def test_bad_input_exits_2_with_one_line(runner, landscape, services, args, stdin, message):
    r = runner.invoke(["secrets", "put", *args], input=stdin)
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [message] or r.output.strip().startswith(message)
    assert len(r.output.strip().splitlines()) == 1
    with services.sessions() as s:
        assert s.exec(select(SecretRef)).all() == [] and s.exec(select(LocalSecret)).all() == []


def test_a_missing_file_is_one_line(runner, landscape, tmp_path):
    r = runner.invoke(["secrets", "put", "erp-cc", "--field", "client_secret", "--file", str(tmp_path / "absent")])
    assert r.exit_code == 2 and r.output.startswith("error: cannot read") and len(r.output.splitlines()) == 1


def test_the_value_is_never_an_argument(runner):
    r = runner.invoke(["secrets", "put", "erp-cc", "--field", "client_secret", "--value", "x"])
    assert r.exit_code == 2 and "No such option" in r.output


def test_rotate_key_adds_a_key_and_rewraps_every_data_key(runner, landscape, services, settings):
    for value in ("one", "two"):
        assert runner.invoke(["secrets", "put", "erp-cc", "--field", "client_secret"], input=value).exit_code == 0
    before = load_keyring(None, settings.home)
    r = runner.invoke(["secrets", "rotate-key"])
    assert r.exit_code == 0, r.output
    after = load_keyring(None, settings.home)
    assert [k.key_id for k in after.keys] == [after.current.key_id, before.current.key_id]
    assert "re-wrapped 2 data keys" in r.output and before.current.key_id in r.output
    assert oct(key_file_path(settings.home).stat().st_mode & 0o777) == "0o600"
    with services.sessions() as s:
        assert {row.key_id for row in s.exec(select(LocalSecret)).all()} == {after.current.key_id}
    r = runner.invoke(["secrets", "status"])
    assert r.exit_code == 0
    from govern.secrets.local import LocalSecretStore
    from govern.secrets.keys import KeyRing

    only_new = LocalSecretStore(services.sessions, KeyRing([after.current]))
    assert only_new.get("credential/erp-cc/client_secret").reveal() == "two"
    assert only_new.get("credential/erp-cc/client_secret", version=1).reveal() == "one"


def test_init_creates_the_key_file(runner, settings, monkeypatch):
    monkeypatch.setenv("GOVERN_ADMIN_PASSWORD", "correct horse battery staple")
    key_file = key_file_path(settings.home)
    if key_file.exists():
        key_file.unlink()
    r = runner.invoke(["init"])
    assert r.exit_code == 0, r.output
    assert "secret store: local, master key file" in r.output and "created (mode 0600)" in r.output
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_a_loose_key_file_is_refused_in_one_line(runner, settings):
    load_keyring(None, settings.home, create=True)
    key_file_path(settings.home).chmod(0o644)
    r = runner.invoke(["secrets", "rotate-key"])
    assert r.exit_code == 2 and "must be 0600" in r.output and len(r.output.splitlines()) == 1
