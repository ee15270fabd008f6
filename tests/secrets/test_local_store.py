"""LocalSecretStore: envelope encryption, versions and check-and-set, key rotation, swapped rows, the key file."""
from __future__ import annotations

import base64
import os

import pytest
import sqlalchemy as sa
from sqlmodel import select

from govern.config import load_settings
from govern.domain.secret import Secret
from govern.errors import ConfigurationError, SecretConflict, SecretNotFound
from govern.secrets.errors import SecretIntegrityError
from govern.secrets.keys import KeyRing, key_file_path, load_keyring, new_key
from govern.secrets.local import LocalSecretStore
from govern.store.db import make_engine, make_session_factory, session_scope
from govern.store.tables import LocalSecret


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def store(sessions):
    return LocalSecretStore(sessions, KeyRing([new_key()]))


def test_round_trip_and_no_plaintext_in_the_row(store, sessions):
    value = "round-trip-" + os.urandom(8).hex()
    meta = store.put("credential/a/client_secret", Secret(value))
    assert meta.version == 1
    assert store.get("credential/a/client_secret").reveal() == value
    with sessions() as s:
        row = s.exec(select(LocalSecret)).one()
    assert value.encode() not in bytes(row.ciphertext) + bytes(row.wrapped_key) + bytes(row.nonce)
    assert row.key_id == store.keyring.current.key_id


def test_versions_and_check_and_set(store):
    path = "credential/a/password"
    store.put(path, Secret("one"), cas=0)
    with pytest.raises(SecretConflict):
        store.put(path, Secret("again"), cas=0)
    store.put(path, Secret("two"), cas=1)
    with pytest.raises(SecretConflict):
        store.put(path, Secret("stale"), cas=1)
    assert store.get(path).reveal() == "two"
    assert store.get(path, version=1).reveal() == "one"
    meta = store.metadata(path)
    assert (meta.version, meta.versions) == (2, (1, 2))
    with pytest.raises(SecretNotFound):
        store.get(path, version=7)
    store.delete(path)
    with pytest.raises(SecretNotFound):
        store.get(path)
    assert store.list_paths() == []
    # After a delete the path counts as absent (cas=0), but version numbers keep counting.
    assert store.put(path, Secret("three"), cas=0).version == 3


def test_key_rotation_old_ciphertexts_still_decrypt_new_ones_use_the_new_key(sessions):
    old = new_key()
    store = LocalSecretStore(sessions, KeyRing([old]))
    store.put("p/one", Secret("first"))
    newer = new_key()
    rotated = LocalSecretStore(sessions, KeyRing([newer, old]))
    assert rotated.get("p/one").reveal() == "first"  # still wrapped by the old key
    rotated.put("p/two", Secret("second"))
    assert rotated.key_usage() == {old.key_id: 1, newer.key_id: 1}
    assert rotated.rewrap_all() == 1
    assert rotated.key_usage() == {newer.key_id: 2}
    # Once every data key is re-wrapped, the old key can be removed from the list.
    only_new = LocalSecretStore(sessions, KeyRing([newer]))
    assert only_new.get("p/one").reveal() == "first"
    assert only_new.get("p/two").reveal() == "second"
    with pytest.raises(SecretIntegrityError, match="not in the key list"):
        LocalSecretStore(sessions, KeyRing([old])).get("p/two")


@pytest.mark.parametrize("columns", [("ciphertext", "nonce"), ("ciphertext", "nonce", "wrapped_key", "key_id")])
def test_a_row_copied_onto_another_path_does_not_decrypt(store, sessions, columns):
    store.put("credential/a/client_secret", Secret("secret of A"))
    store.put("credential/b/client_secret", Secret("secret of B"))
    with session_scope(sessions) as s:
        a = s.exec(select(LocalSecret).where(LocalSecret.path == "credential/a/client_secret")).one()
        b = s.exec(select(LocalSecret).where(LocalSecret.path == "credential/b/client_secret")).one()
        for column in columns:
            setattr(b, column, getattr(a, column))
        s.add(b)
    with pytest.raises(SecretIntegrityError) as caught:
        store.get("credential/b/client_secret")
    assert "credential/b/client_secret" in caught.value.detail
    assert "secret of" not in caught.value.detail
    assert store.get("credential/a/client_secret").reveal() == "secret of A"


def test_a_row_moved_to_another_version_does_not_decrypt(store, sessions):
    store.put("p", Secret("v1"))
    store.put("p", Secret("v2"))
    with session_scope(sessions) as s:
        s.execute(sa.delete(LocalSecret).where(LocalSecret.version == 2))
        s.execute(sa.update(LocalSecret).where(LocalSecret.version == 1).values(version=2))
    with pytest.raises(SecretIntegrityError):
        store.get("p")


def test_key_file_is_created_with_mode_0600_and_refused_when_looser(tmp_path):
    home = tmp_path / "instance"
    with pytest.raises(ConfigurationError, match="no master key"):
        load_keyring(None, home, create=False)
    ring = load_keyring(None, home, create=True)
    path = key_file_path(home)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_keyring(None, home).current == ring.current
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="0644"):
        load_keyring(None, home)


def test_key_ring_add_first_persists_with_mode_0600(tmp_path):
    ring = load_keyring(None, tmp_path, create=True)
    first = ring.current
    ring.add_first(new_key())
    again = load_keyring(None, tmp_path)
    assert [k.key_id for k in again.keys] == [k.key_id for k in ring.keys]
    assert again.keys[1] == first
    assert oct(key_file_path(tmp_path).stat().st_mode & 0o777) == "0o600"


def test_master_keys_from_the_environment(tmp_path):
    a, b = os.urandom(32), os.urandom(32)
    ring = load_keyring(",".join(base64.b64encode(k).decode() for k in (a, b)), tmp_path)
    assert [k.material for k in ring.keys] == [a, b]
    assert not key_file_path(tmp_path).exists()
    with pytest.raises(ConfigurationError, match="32 bytes"):
        load_keyring(base64.b64encode(b"short").decode(), tmp_path)
    with pytest.raises(ConfigurationError, match="base64"):
        load_keyring("not base64!!", tmp_path)
    with pytest.raises(ConfigurationError, match="GOVERN_MASTER_KEY"):
        ring.add_first(new_key())
    assert "material" not in repr(ring.current) and repr(a) not in repr(ring)


def test_production_needs_a_master_key_from_the_environment():
    with pytest.raises(ConfigurationError, match="GOVERN_MASTER_KEY"):
        load_settings({}, env="production", secret_key="x" * 40, database_url="postgresql://h/db")


def test_readiness_fails_on_a_loose_key_file(services, settings):
    from govern.errors import ConfigurationError

    assert not key_file_path(settings.home).exists()  # building services does not create it
    services.health_checks["secret_store"]()  # development: created on first use
    assert key_file_path(settings.home).exists()
    key_file_path(settings.home).chmod(0o640)
    from govern.bootstrap import build_services

    fresh = build_services(settings)
    try:
        with pytest.raises(ConfigurationError):
            fresh.health_checks["secret_store"]()
    finally:
        fresh.close()
