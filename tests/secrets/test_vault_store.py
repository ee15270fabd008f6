"""VaultSecretStore against a real OpenBao dev server: KV v2, check-and-set, auth, renewal, transit, errors."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from govern.domain.secret import Secret
from govern.errors import SecretConflict, SecretNotFound, SecretStoreUnavailable
from govern.secrets.cipher import CacheCipher
from govern.secrets.errors import SecretStorePermissionDenied
from govern.secrets.keys import KeyRing, new_key
from govern.secrets.vault import VaultSecretStore
from govern.secrets.vault_auth import AppRoleAuth, TokenAuth

pytestmark = pytest.mark.vault


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def now(self):
        return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=self.t)

    def monotonic(self):
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _store(server, auth=None, clock=None, mount="secret"):
    import hvac

    return VaultSecretStore(hvac.Client(url=server.addr, timeout=5), auth or TokenAuth(server.token),
                            mount=mount, clock=clock)


@pytest.fixture
def prefix():
    return f"t-{uuid.uuid4().hex[:8]}/"


def test_write_read_versions_and_check_and_set(openbao, prefix):
    store = _store(openbao)
    path = prefix + "credential/erp/client_secret"
    assert store.put(path, Secret("one"), cas=0).version == 1
    with pytest.raises(SecretConflict) as conflict:
        store.put(path, Secret("again"), cas=0)
    assert path not in conflict.value.detail and "again" not in conflict.value.detail
    assert store.put(path, Secret("two"), cas=1).version == 2
    assert store.get(path).reveal() == "two"
    assert store.get(path, version=1).reveal() == "one"
    meta = store.metadata(path)
    assert (meta.version, meta.versions) == (2, (1, 2)) and meta.created_at is not None
    assert path in store.list_paths()
    with pytest.raises(SecretNotFound):
        store.get(path, version=9)
    store.delete(path)
    with pytest.raises(SecretNotFound):
        store.get(path)
    with pytest.raises(SecretNotFound):
        store.metadata(path)
    store.ping()


def test_a_missing_mount_is_named_clearly(openbao, prefix):
    from govern.secrets.vault import VaultRequestRefused

    store = _store(openbao, mount="no-such-mount")
    with pytest.raises(VaultRequestRefused, match="no KV v2 engine mounted at 'no-such-mount'"):
        store.put(prefix + "x", Secret("v"))


def test_a_bad_token_is_a_permission_error_without_vault_text(openbao, prefix):
    store = _store(openbao, TokenAuth("not-a-real-token"))
    with pytest.raises(SecretStorePermissionDenied) as caught:
        store.get(prefix + "x")
    assert "http" not in caught.value.detail and prefix not in caught.value.detail
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_nothing_listening_is_unavailable_with_retry_after():
    import hvac

    from tests.fixtures_openbao import free_port

    store = VaultSecretStore(hvac.Client(url=f"http://127.0.0.1:{free_port()}", timeout=2), TokenAuth("t"))
    with pytest.raises(SecretStoreUnavailable) as caught:
        store.get("anything")
    assert caught.value.status == 503 and caught.value.headers["Retry-After"]
    assert caught.value.__context__ is None  # the transport error is not kept
    with pytest.raises(SecretStoreUnavailable):
        store.ping()


def test_token_is_renewed_when_a_third_of_its_ttl_is_left(openbao, prefix):
    root = openbao.client()
    token = root.auth.token.create(ttl="300s", renewable=True, policies=["root"])["auth"]["client_token"]
    clock = FakeClock()
    store = _store(openbao, TokenAuth(token), clock)
    store.put(prefix + "a", Secret("x"))
    assert (store.logins, store.renewals) == (1, 0)
    clock.advance(150)  # half the TTL left: not yet
    store.get(prefix + "a")
    assert store.renewals == 0
    clock.advance(60)  # 90 of 300 seconds left: less than a third
    store.get(prefix + "a")
    assert store.renewals == 1
    assert store.token_expires_in == pytest.approx(300, abs=5)  # the deadline moved with the renewal
    info = root.auth.token.lookup(token)["data"]
    assert info.get("last_renewal_time") or info.get("last_renewal")  # the server saw a renew-self


def test_approle_login_and_renewal(openbao, prefix):
    role_id, secret_id = openbao.approle_credentials(token_ttl="120s", token_max_ttl="1h")
    clock = FakeClock()
    store = _store(openbao, AppRoleAuth(role_id, secret_id), clock)
    store.put(prefix + "approle", Secret("via approle"))
    assert store.get(prefix + "approle").reveal() == "via approle"
    assert (store.logins, store.renewals) == (1, 0)
    clock.advance(90)
    store.get(prefix + "approle")
    assert (store.logins, store.renewals) == (1, 1)


def test_approle_logs_in_again_when_the_token_cannot_be_renewed(openbao, prefix):
    # Batch tokens are never renewable (https://openbao.org/docs/concepts/tokens/#batch-tokens).
    role_id, secret_id = openbao.approle_credentials(token_ttl="120s", token_type="batch")
    clock = FakeClock()
    store = _store(openbao, AppRoleAuth(role_id, secret_id), clock)
    store.put(prefix + "b", Secret("v"))
    clock.advance(100)
    store.get(prefix + "b")
    assert (store.logins, store.renewals) == (2, 0)


def test_approle_with_a_wrong_secret_id_is_a_permission_error(openbao):
    role_id, _ = openbao.approle_credentials()
    store = _store(openbao, AppRoleAuth(role_id, "wrong-secret-id"))
    with pytest.raises((SecretStorePermissionDenied,)) as caught:
        store.get("x")
    assert "wrong-secret-id" not in caught.value.detail


def test_transit_encrypts_cached_data(openbao):
    root = openbao.client()
    if "transit/" not in root.sys.list_mounted_secrets_engines()["data"]:
        root.sys.enable_secrets_engine("transit")
    store = _store(openbao)
    assert store.transit.available()
    ciphertext = store.transit.encrypt(b"upstream token")
    assert ciphertext.startswith("vault:v") and "upstream" not in ciphertext
    assert store.transit.decrypt(ciphertext) == b"upstream token"
    cipher = CacheCipher(keyring=KeyRing([new_key()]), transit=store.transit, transit_available=store.transit.available)
    assert cipher.mode == "transit"
    blob = cipher.seal(b"cached")
    assert blob.startswith(b"t1:vault:") and cipher.open(blob) == b"cached"


def test_without_transit_the_cache_cipher_falls_back_to_the_local_key(openbao):
    store = _store(openbao)
    store.transit.mount = "no-transit-here"
    assert not store.transit.available()
    cipher = CacheCipher(keyring=KeyRing([new_key()]), transit=store.transit, transit_available=store.transit.available)
    assert cipher.mode == "local"
    assert cipher.open(cipher.seal(b"cached")) == b"cached"


def test_stopped_then_restarted_server(openbao_private, prefix):
    store = _store(openbao_private)
    store.put(prefix + "s", Secret("before"))
    openbao_private.stop()
    with pytest.raises(SecretStoreUnavailable):
        store.get(prefix + "s")
    with pytest.raises(SecretStoreUnavailable):
        store.put(prefix + "s", Secret("during"))
    with pytest.raises(SecretStoreUnavailable):
        store.ping()
    openbao_private.restart()  # dev mode: the data is gone, the same root token works again
    store.ping()
    store.put(prefix + "s", Secret("after"), cas=0)
    assert store.get(prefix + "s").reveal() == "after"
