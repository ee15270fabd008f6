"""Issue #14: private_key_jwt assertions are single-use across processes without Redis (through the
database), and forged assertions are refused. Each group has a positive control."""
from __future__ import annotations

import base64
import datetime as dt
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwk, jwt

from tests.security.auth_landscape import (PUBLIC_URL, TOKEN_URL, applied, assertion, govern_instance,  # noqa: F401
                                           oauth_error, token_with_assertion, unsigned)


def _two_instances(govern_instance):
    """Two govern processes' worth of services and apps over one database, no Redis (the default)."""
    first_services, first = govern_instance()
    second_services, second = govern_instance()
    assert first_services.cache.kind == second_services.cache.kind == "memory"
    assert first_services.engine is not second_services.engine
    return first, second


def test_a_jti_used_on_one_instance_is_refused_on_another(applied, govern_instance):
    first, second = _two_instances(govern_instance)
    signed = assertion(applied.client_key)
    assert token_with_assertion(first, signed).status_code == 200
    oauth_error(token_with_assertion(second, signed), 401, "invalid_client")
    oauth_error(token_with_assertion(first, signed), 401, "invalid_client")
    # Positive control: a fresh assertion works on the second instance.
    assert token_with_assertion(second, assertion(applied.client_key)).status_code == 200


@pytest.mark.postgres
def test_the_same_on_postgresql(runner, tmp_path, postgres_url, monkeypatch):
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import load_settings
    from tests.security.auth_landscape import apply_landscape

    monkeypatch.setenv("GOVERN_DATABASE_URL", postgres_url)
    applied_pg = apply_landscape(runner, tmp_path)
    settings = load_settings({}, home=tmp_path / "pg", database_url=postgres_url, public_url=PUBLIC_URL)
    (tmp_path / "pg").mkdir()
    built = [build_services(settings), build_services(settings)]
    try:
        first, second = (create_app({"TESTING": True}, services=s).test_client() for s in built)
        signed = assertion(applied_pg.client_key)
        assert token_with_assertion(first, signed).status_code == 200
        oauth_error(token_with_assertion(second, signed), 401, "invalid_client")
        assert token_with_assertion(second, assertion(applied_pg.client_key)).status_code == 200
    finally:
        for s in built:
            s.close()


def test_the_same_jti_from_two_clients_are_two_assertions(applied, govern_instance):
    """The key is (client id, jti): one client cannot burn another's jti (nor collide with it)."""
    _, client = govern_instance()
    from govern.store.seen_assertions import DatabaseSeenAssertions

    services, _ = govern_instance()
    seen = DatabaseSeenAssertions(services.engine, services.clock)
    later = services.clock.now() + dt.timedelta(minutes=5)
    assert seen.first_use("other-client", "shared-jti", later)
    assert token_with_assertion(client, assertion(applied.client_key, jti="shared-jti")).status_code == 200


def test_expired_rows_are_purged_and_only_live_rows_prove_a_replay(govern_instance):
    import sqlalchemy as sa

    from govern.store.seen_assertions import DatabaseSeenAssertions
    from govern.store.tables import SeenClientAssertion

    services, _ = govern_instance()

    class Clock:
        def __init__(self):
            self.t = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

        def now(self):
            return self.t

        def monotonic(self):
            return self.t.timestamp()

    clock = Clock()
    seen = DatabaseSeenAssertions(services.engine, clock, purge_every_seconds=60)
    assert seen.first_use("jwt-sync", "a", clock.t + dt.timedelta(seconds=30))
    assert not seen.first_use("jwt-sync", "a", clock.t + dt.timedelta(seconds=30))
    clock.t += dt.timedelta(seconds=31)
    # Expired: the row no longer proves anything (the assertion itself is refused on its exp anyway).
    assert seen.first_use("jwt-sync", "a", clock.t + dt.timedelta(seconds=30))
    assert seen.first_use("jwt-sync", "b", clock.t + dt.timedelta(seconds=10))
    clock.t += dt.timedelta(seconds=120)
    assert seen.first_use("jwt-sync", "c", clock.t + dt.timedelta(seconds=10))  # triggers the purge
    with services.engine.connect() as conn:
        keys = conn.execute(sa.select(SeenClientAssertion.__table__.c.key)).scalars().all()
    assert keys == [DatabaseSeenAssertions.key("jwt-sync", "c")]


# --- forged assertions --------------------------------------------------------------------------------

def _now() -> int:
    return int(time.time())


def _claims(**changes):
    base = {"iss": "jwt-sync", "sub": "jwt-sync", "aud": TOKEN_URL, "iat": _now(), "exp": _now() + 60,
            "jti": uuid.uuid4().hex}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def _public_pem(key) -> bytes:
    return key.as_pem(private=False)


FORGERIES = {
    "alg_none": lambda key: unsigned(_claims(), {"alg": "none", "kid": "jwt-sync-1"}),
    "alg_none_uppercase": lambda key: unsigned(_claims(), {"alg": "NONE", "kid": "jwt-sync-1"}),
    "signature_stripped": lambda key: assertion(key).rsplit(".", 1)[0] + ".",
    "hs256_with_the_public_key": lambda key: _hmac_signed(_public_pem(key)),
    "hs256_with_the_public_jwk_n": lambda key: jwt.encode(
        {"alg": "HS256", "kid": "jwt-sync-1"}, _claims(),
        jwk.OctKey.import_key(base64.urlsafe_b64decode(key.as_dict()["n"] + "==")), algorithms=["HS256"]),
    "rs512_not_on_the_allow_list": lambda key: jwt.encode(
        {"alg": "RS512", "kid": "jwt-sync-1"}, _claims(), key, algorithms=["RS512"]),
    "wrong_aud_via_host_games": lambda key: assertion(key, aud="http://localhost/oauth/token"),
    "wrong_aud_other_service": lambda key: assertion(key, aud="https://other-service.example.com/oauth/token"),
    "aud_missing": lambda key: assertion(key, aud=None),
    "expired": lambda key: assertion(key, exp_in=-600),
    "nbf_in_future": lambda key: assertion(key, nbf=_now() + 3600),
    "exp_missing": lambda key: jwt.encode({"alg": "RS256", "kid": "jwt-sync-1"}, _claims(exp=None), key),
    "wrong_issuer": lambda key: assertion(key, iss="order-sync"),
    "jti_missing": lambda key: jwt.encode({"alg": "RS256", "kid": "jwt-sync-1"}, _claims(jti=None), key),
    "jti_not_a_string": lambda key: jwt.encode({"alg": "RS256", "kid": "jwt-sync-1"}, _claims(jti=12345), key),
    "unknown_kid_rogue_key": lambda key: assertion(
        jwk.RSAKey.generate_key(2048, parameters={"kid": "attacker-1"}, private=True),
        header={"alg": "RS256", "kid": "attacker-1"}),
    "rogue_key_with_the_registered_kid": lambda key: assertion(
        jwk.RSAKey.generate_key(2048, parameters={"kid": "jwt-sync-1"}, private=True)),
    "embedded_jwk_header": lambda key: _embedded_jwk(),
    "sub_of_another_client": lambda key: assertion(key, sub="order-sync"),
    "sub_unknown": lambda key: assertion(key, sub="no-such-client"),
    "sub_not_a_string": lambda key: jwt.encode({"alg": "RS256", "kid": "jwt-sync-1"},
                                               _claims(sub=["jwt-sync"], iss=["jwt-sync"]), key),
    "not_a_jwt": lambda key: "not.a.jwt",
    "payload_not_an_object": lambda key: unsigned(["jwt-sync"], {"alg": "RS256"}) + "c2ln",
}


def _hmac_signed(secret: bytes) -> str:
    """The RS/HS key-confusion attack (RFC 8725 section 2.1), signed by hand: libraries refuse to do it."""
    import hashlib
    import hmac

    head = unsigned(_claims(), {"alg": "HS256", "kid": "jwt-sync-1", "typ": "JWT"}).rstrip(".")
    signature = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")


def _embedded_jwk():
    rogue = jwk.RSAKey.generate_key(2048, private=True)
    return jwt.encode({"alg": "RS256", "jwk": rogue.as_dict(private=False)}, _claims(), rogue)


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_assertions_are_refused(applied, govern_instance, name):
    _, client = govern_instance()
    forged = FORGERIES[name](applied.client_key)
    resp = oauth_error(token_with_assertion(client, forged), 401, "invalid_client")
    assert resp.get_json()["error_description"] == "client authentication failed"
    # Positive control: the same instance accepts a genuine assertion.
    assert token_with_assertion(client, assertion(applied.client_key)).status_code == 200


@pytest.mark.parametrize("aud", [TOKEN_URL, PUBLIC_URL, "govern"])
def test_positive_control_the_configured_audiences(applied, govern_instance, aud):
    _, client = govern_instance()
    assert token_with_assertion(client, assertion(applied.client_key, aud=aud)).status_code == 200


def test_ec_p256_assertions_are_accepted_when_registered(runner, tmp_path, govern_instance):
    """ES256 stays on the allow-list: the positive control for the algorithm checks."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.security.auth_landscape import LANDSCAPE

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key = jwk.ECKey.import_key(pem, parameters={"kid": "jwt-sync-1"})
    import json

    path = tmp_path / "ec.yaml"
    path.write_text(LANDSCAPE.format(jwk=json.dumps(key.as_dict(private=False))))
    assert runner.invoke(["apply", "-f", str(path)]).exit_code == 0
    _, client = govern_instance()
    signed = assertion(key, header={"alg": "ES256", "kid": "jwt-sync-1"})
    assert token_with_assertion(client, signed).status_code == 200
