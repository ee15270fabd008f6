"""Signing-key rotation: the old kid stays published (and accepted) until its tokens have expired."""
from __future__ import annotations

import sqlalchemy as sa

from govern.broker.signing_keys import rotate_signing_key
from govern.store.broker_tables import SigningKey
from tests.broker.conftest import access_token, ask


def _kids(client):
    return [k["kid"] for k in client.get("/oauth/jwks.json").get_json()["keys"]]


def test_rotation_keeps_the_old_kid_until_its_tokens_expire(broker_client, broker_services, clock, landscape):
    old_token = access_token(broker_client)
    [old_kid] = _kids(broker_client)
    new_kid = rotate_signing_key(broker_services.signing_keys)
    assert new_kid != old_kid
    assert set(_kids(broker_client)) == {old_kid, new_kid}
    new_token = access_token(broker_client)
    assert new_token.split(".")[0] != old_token.split(".")[0]  # signed with the new kid
    assert ask(broker_client, old_token).status_code == 200  # the old key still verifies its tokens

    clock.advance(600)
    assert set(_kids(broker_client)) == {old_kid, new_kid}
    clock.advance(900 + 60 - 600 + 6)  # past token lifetime + leeway since the rotation (and the reload interval)
    assert _kids(broker_client) == [new_kid]
    assert ask(broker_client, new_token).status_code == 401  # lived 900 s: expired now too
    with broker_services.sessions() as s:
        states = dict(s.execute(sa.select(SigningKey.kid, SigningKey.state)).all())
    assert states == {old_kid: "retired", new_kid: "active"}
    old_path = f"govern/signing-keys/{old_kid}"
    assert old_path not in broker_services.secret_store.data  # the private half is gone


def test_private_keys_live_only_in_the_secret_store(broker_client, broker_services, landscape):
    access_token(broker_client)
    with broker_services.sessions() as s:
        row = s.execute(sa.select(SigningKey)).scalars().one()
    assert "d" not in row.public_jwk and row.secret_path in broker_services.secret_store.data
    assert "PRIVATE KEY" in broker_services.secret_store.data[row.secret_path][1]


def test_a_key_made_by_another_process_is_known_at_once(broker_services, clock):
    from govern.broker.signing_keys import SigningKeys
    from govern.store.signing_keys import SigningKeyRepo

    def keys():
        return SigningKeys(SigningKeyRepo(broker_services.sessions), lambda: broker_services.secret_store, clock,
                           token_lifetime_seconds=900)

    a, b = keys(), keys()
    assert b.jwks() == {"keys": []}  # b has loaded (an empty set) before a makes its first key
    token = a.sign({"sub": "x"})
    kid = a.jwks()["keys"][0]["kid"]
    assert b.public_key(kid) is not None  # an unknown kid forces one reload
    assert b.public_key("forged-kid") is None and b.public_key("another-forged-kid") is None
    assert token.count(".") == 2


def test_issuance_without_a_secret_store_refuses_with_a_clear_error(broker_services, clock):
    import pytest

    from govern.broker.signing_keys import SigningKeys
    from govern.store.signing_keys import SigningKeyRepo
    from govern.errors import ConfigurationError

    keys = SigningKeys(SigningKeyRepo(broker_services.sessions), lambda: None, clock, token_lifetime_seconds=900)
    with pytest.raises(ConfigurationError, match="secret store"):
        keys.sign({"sub": "x"})
