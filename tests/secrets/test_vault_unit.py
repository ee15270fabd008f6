"""Unit tier for the vault adapter (a fake hvac client): the error table, Kubernetes login, token upkeep."""
from __future__ import annotations

from types import SimpleNamespace

import hvac.exceptions as hx
import pytest
import requests

from govern.domain.secret import Secret
from govern.errors import SecretConflict, SecretNotFound, SecretStoreUnavailable
from govern.secrets.errors import SecretStorePermissionDenied
from govern.secrets.vault import VaultRequestRefused, VaultSecretStore, translate
from govern.secrets.vault_auth import AppRoleAuth, KubernetesAuth, TokenAuth, auth_from_settings

LEAKY = dict(method="POST", url="http://vault:8200/v1/secret/data/credential/x/client_secret",
             text='{"value":"leaked-value"}')


@pytest.mark.parametrize("exc, expected", [
    (requests.exceptions.ConnectionError("refused http://vault:8200"), SecretStoreUnavailable),
    (requests.exceptions.ReadTimeout("slow"), SecretStoreUnavailable),
    (hx.VaultDown("Vault is sealed", **LEAKY), SecretStoreUnavailable),
    (hx.InternalServerError("boom leaked-value", **LEAKY), SecretStoreUnavailable),
    (hx.BadGateway(None, **LEAKY), SecretStoreUnavailable),
    (hx.RateLimitExceeded(None, **LEAKY), SecretStoreUnavailable),
    (hx.UnexpectedError("odd", **LEAKY), SecretStoreUnavailable),
    (hx.InvalidPath(None, **LEAKY), SecretNotFound),
    (hx.Forbidden(None, errors=["permission denied"], **LEAKY), SecretStorePermissionDenied),
    (hx.Unauthorized(None, **LEAKY), SecretStorePermissionDenied),
    (hx.InvalidRequest(None, errors=["check-and-set parameter did not match the current version"], **LEAKY),
     SecretConflict),
    (hx.InvalidRequest(None, errors=["bad leaked-value"], **LEAKY), VaultRequestRefused),
])
def test_the_error_table(exc, expected):
    mapped = translate(exc)
    assert type(mapped) is expected
    problem = repr(mapped.to_problem()) + mapped.detail
    for fragment in ("leaked-value", "vault:8200", "credential/x", "Vault is sealed", "refused http"):
        assert fragment not in problem
    if expected is SecretStoreUnavailable:
        assert mapped.status == 503 and mapped.headers["Retry-After"]


def test_unknown_exceptions_are_not_swallowed():
    assert translate(KeyError("x")) is None


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def now(self):
        import datetime as dt

        return dt.datetime.now(dt.UTC)

    def monotonic(self):
        return self.t


class FakeClient:
    """Just enough of hvac.Client for VaultSecretStore."""

    def __init__(self, ttl=60, renewable=True):
        self.token = None
        self.calls: list[str] = []
        self.forbid_next = 0
        outer = self

        def lookup_self():
            outer.calls.append("lookup-self")
            return {"data": {"ttl": ttl, "renewable": renewable}}

        def renew_self():
            outer.calls.append("renew-self")
            return {"auth": {"lease_duration": ttl, "renewable": renewable}}

        def k8s_login(role, jwt, mount_point):
            outer.calls.append(f"k8s-login:{role}:{jwt}")
            return {"auth": {"lease_duration": ttl, "renewable": False}}

        def approle_login(role_id, secret_id, mount_point):
            outer.calls.append("approle-login")
            return {"auth": {"lease_duration": ttl, "renewable": renewable}}

        def read_secret_version(path, version, mount_point, raise_on_deleted_version):
            outer.calls.append("read")
            if outer.forbid_next:
                outer.forbid_next -= 1
                raise hx.Forbidden("permission denied", method="GET", url="http://x")
            return {"data": {"data": {"value": "v"}}}

        self.auth = SimpleNamespace(
            token=SimpleNamespace(lookup_self=lookup_self, renew_self=renew_self),
            kubernetes=SimpleNamespace(login=k8s_login),
            approle=SimpleNamespace(login=approle_login))
        self.secrets = SimpleNamespace(kv=SimpleNamespace(v2=SimpleNamespace(read_secret_version=read_secret_version)))


def test_kubernetes_login_reads_the_service_account_jwt_on_every_login(tmp_path):
    jwt_file = tmp_path / "token"
    jwt_file.write_text("jwt-one\n")
    client, clock = FakeClient(ttl=60), FakeClock()
    store = VaultSecretStore(client, KubernetesAuth("govern", jwt_file), clock=clock)
    assert store.get("p") == Secret("v")
    jwt_file.write_text("jwt-two")  # the kubelet rotated the projected token
    clock.t = 45  # 15 of 60 s left, and the token is not renewable: log in again
    store.get("p")
    assert [c for c in client.calls if c.startswith("k8s")] == ["k8s-login:govern:jwt-one", "k8s-login:govern:jwt-two"]


def test_a_missing_jwt_file_is_a_permission_error(tmp_path):
    store = VaultSecretStore(FakeClient(), KubernetesAuth("govern", tmp_path / "absent"))
    with pytest.raises(SecretStorePermissionDenied, match="kubernetes"):
        store.get("p")


def test_renew_self_only_when_less_than_a_third_is_left():
    client, clock = FakeClient(ttl=90), FakeClock()
    store = VaultSecretStore(client, TokenAuth("t"), clock=clock)
    store.get("p")
    clock.t = 59  # 31 s left: more than a third
    store.get("p")
    assert "renew-self" not in client.calls
    clock.t = 61  # 29 s left
    store.get("p")
    assert client.calls.count("renew-self") == 1 and store.renewals == 1
    store.get("p")  # renewed: the deadline moved
    assert client.calls.count("renew-self") == 1


def test_a_forbidden_answer_makes_approle_log_in_again_once():
    client = FakeClient()
    store = VaultSecretStore(client, AppRoleAuth("role", "sid"), clock=FakeClock())
    store.get("p")
    client.forbid_next = 1  # e.g. the token was revoked
    assert store.get("p") == Secret("v")
    assert client.calls.count("approle-login") == 2
    client.forbid_next = 2  # a real policy denial: still forbidden after the new login
    with pytest.raises(SecretStorePermissionDenied):
        store.get("p")


def test_auth_from_settings():
    from govern.config import load_settings

    base = dict(secret_store="vault", vault_addr="http://127.0.0.1:1")
    assert isinstance(auth_from_settings(load_settings({}, **base, vault_token="t")), TokenAuth)
    assert isinstance(auth_from_settings(load_settings({}, **base, vault_role_id="r", vault_secret_id="s")), AppRoleAuth)
    assert isinstance(auth_from_settings(load_settings({}, **base, vault_kubernetes_role="k")), KubernetesAuth)
    from govern.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="GOVERN_VAULT_TOKEN"):
        auth_from_settings(load_settings({}, **base))
    assert "sid" not in repr(AppRoleAuth("r", "sid")) and "tok-value-xyz" not in repr(TokenAuth("tok-value-xyz"))
