"""Each grant and client authentication method against the fake authlib upstream."""
from __future__ import annotations

import sqlalchemy as sa

from govern.store.tables import SecretRef, SecretVersion
from govern.secrets.service import secret_ref_name
from tests.broker_upstream.conftest import put_secret, wire_credential
from tests.factories import update_entity
from tests.fakes.oauth_server import rsa_keypair


def test_client_credentials_with_client_secret_basic(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream)
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.count("client_credentials") == 1
    assert fake_upstream.access_token_valid(token.access_token.reveal())
    assert token.token_type == "Bearer" and token.scopes == ("orders.read",)
    assert token.expires_at > broker_services.clock.now()
    assert "at_" not in repr(token)


def test_client_credentials_with_client_secret_post(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream, auth="client_secret_post")
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.access_token_valid(token.access_token.reveal())


def test_client_credentials_with_private_key_jwt(broker_services, fake_upstream):
    pem, jwk = rsa_keypair()
    names = wire_credential(broker_services, fake_upstream, auth="private_key_jwt", public_jwk=jwk, private_key=pem)
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.access_token_valid(token.access_token.reveal())


def test_jwt_bearer_grant_signs_with_the_principals_key(broker_services, fake_upstream):
    pem, jwk = rsa_keypair()
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_jwt_bearer", subject="bob@erp",
                            secret=None)
    fake_upstream.register_user_key("bob@erp", jwk)
    put_secret(broker_services, names["credential"], "default", "private_key", pem)
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.count("jwt_bearer") == 1
    assert fake_upstream.access_tokens[token.access_token.reveal()].user == "bob@erp"


def test_jwt_bearer_with_the_wrong_key_is_invalid_grant(broker_services, fake_upstream):
    import pytest

    from govern.broker.upstream.errors import UpstreamInvalidGrant

    pem, _ = rsa_keypair()
    _, other_jwk = rsa_keypair()
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_jwt_bearer", subject="bob@erp", secret=None)
    fake_upstream.register_user_key("bob@erp", other_jwk)
    put_secret(broker_services, names["credential"], "default", "private_key", pem)
    with pytest.raises(UpstreamInvalidGrant) as err:
        broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert err.value.code == "upstream_invalid_grant"


def _refresh_versions(services, credential, principal):
    with services.sessions() as s:
        ref = s.execute(sa.select(SecretRef).where(
            SecretRef.external_id == secret_ref_name("credential", credential, principal, "refresh_token"))).scalar_one()
        stages = {v.version: v.stage for v in s.execute(sa.select(SecretVersion).where(
            SecretVersion.secret_ref_id == ref.id)).scalars()}
        return ref, stages


def test_refresh_token_rotation_stores_the_new_token_with_cas(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_refresh_token")
    old = fake_upstream.issue_refresh_token("erp-client")
    put_secret(broker_services, names["credential"], "default", "refresh_token", old)
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.access_token_valid(token.access_token.reveal())
    ref, stages = _refresh_versions(broker_services, names["credential"], "default")
    assert ref.current_version == 2 and stages == {1: "previous", 2: "current"}
    new = broker_services.secret_store.get(ref.path).reveal()
    assert new != old and fake_upstream.refresh_token_valid(new) and not fake_upstream.refresh_token_valid(old)
    # The next refresh uses the rotated token.
    broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",), force_refresh=True)
    assert fake_upstream.count("refresh_token") == 2
    ref, _ = _refresh_versions(broker_services, names["credential"], "default")
    assert ref.current_version == 3


def test_cas_conflict_keeps_the_newer_refresh_token(broker_services, fake_upstream, monkeypatch):
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_refresh_token")
    put_secret(broker_services, names["credential"], "default", "refresh_token", fake_upstream.issue_refresh_token("erp-client"))
    store = broker_services.secret_store
    original_put = store.put

    def racing_put(path, value, *, cas=None):
        if path.endswith("/refresh_token") and cas == 1 and len(store.data[path]) == 1:
            original_put(path, type(value)("reconnected-meanwhile"), cas=1)  # a reconnect wins the race
        return original_put(path, value, cas=cas)

    monkeypatch.setattr(store, "put", racing_put)
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert token.access_token
    ref, _ = _refresh_versions(broker_services, names["credential"], "default")
    assert store.get(ref.path).reveal() == "reconnected-meanwhile"


def test_no_new_refresh_token_keeps_the_stored_one(broker_services, fake_upstream):
    fake_upstream.rotate_refresh_tokens = False
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_refresh_token")
    old = fake_upstream.issue_refresh_token("erp-client")
    put_secret(broker_services, names["credential"], "default", "refresh_token", old)
    broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    ref, stages = _refresh_versions(broker_services, names["credential"], "default")
    assert ref.current_version == 1 and stages == {1: "current"}
    assert broker_services.secret_store.get(ref.path).reveal() == old


def _with_overlap(services, credential: str, overlap: str) -> None:
    update_entity(services, "credentials", credential, rotation={"every": "90d", "overlap": overlap})


def test_client_secret_rotation_overlap_falls_back_to_the_previous_secret(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream, secret="old-secret")
    _with_overlap(broker_services, names["credential"], "24h")  # without one the previous secret is never tried
    # The rotation helper staged a new current secret the upstream does not know yet.
    put_secret(broker_services, names["credential"], None, "client_secret", "new-secret-not-yet-live")
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert fake_upstream.access_token_valid(token.access_token.reveal())
    assert fake_upstream.count("client_credentials") == 2  # the newest first, then the previous one


def test_per_user_principal_resolves_to_the_callers_identity(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream, protocol="oauth2_refresh_token", principal="u-order-sync",
                            principal_type="per_user")
    put_secret(broker_services, names["credential"], "u-order-sync", "refresh_token",
               fake_upstream.issue_refresh_token("erp-client", user="carol"))
    # The caller is named by its integration user; govern finds that user's own principal row.
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "order-sync", ("orders.read",))
    assert fake_upstream.access_tokens[token.access_token.reveal()].user == "carol"


def test_a_rotated_client_secret_is_picked_up_despite_the_memory_cache(broker_services, fake_upstream):
    names = wire_credential(broker_services, fake_upstream, secret="first-secret")
    src = broker_services.upstream_tokens
    src.get_token(names["named_credential"], "default", ("orders.read",))
    # Rotation finished: the upstream knows only the new secret, and the vault's current version is the new one.
    put_secret(broker_services, names["credential"], None, "client_secret", "second-secret")
    fake_upstream.clients["erp-client"].secrets = ["second-secret"]
    token = src.get_token(names["named_credential"], "default", ("orders.read",), force_refresh=True)
    assert fake_upstream.access_token_valid(token.access_token.reveal())
