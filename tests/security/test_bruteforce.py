"""Issue #14: guessing client secrets and burning CPU at /oauth/token, enumerating client ids, locking
admins out of the console. Small limits are configured so a few requests reach them; no test measures
time: the timing claims are checked by counting scrypt evaluations (the costly step)."""
from __future__ import annotations

import hashlib

import pytest

from tests.security.auth_landscape import (FAR_SECRET, SECRET, applied, assertion, govern_instance,  # noqa: F401
                                           oauth_error, token_with_assertion, token_with_secret)

LIMITS = {
    "ratelimit_client_failures_per_address_client": "3/15minutes",
    "ratelimit_client_failures_per_address": "8/15minutes",
    "ratelimit_client_failures_per_client": "5/15minutes",
    "ratelimit_token_requests_per_address": "1000/minute",
}


@pytest.fixture
def scrypt_calls(monkeypatch):
    """Counts scrypt evaluations (a real check or the dummy one; both cost the same by construction)."""
    calls = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


@pytest.fixture
def instance(applied, govern_instance):
    return govern_instance(**LIMITS)


def _refusal(resp):
    oauth_error(resp, 401, "invalid_client")
    return resp.get_data(as_text=True), resp.headers.get("WWW-Authenticate")


# --- enumeration: one answer, one code path -------------------------------------------------------------

def test_positive_control_the_right_secret_costs_one_hash_and_works(instance, scrypt_calls):
    _, client = instance
    assert token_with_secret(client).status_code == 200
    assert len(scrypt_calls) == 1


@pytest.mark.parametrize("user,secret,remote,hashes", [
    ("order-sync", "wrong-secret", "127.0.0.1", 1),  # a wrong secret: its hash
    ("no-such-client", "wrong-secret", "127.0.0.1", 1),  # unknown: a dummy hash of the same cost
    ("jwt-sync", "wrong-secret", "127.0.0.1", 1),  # registered for private_key_jwt: no secret at all
    ("far-sync", FAR_SECRET, "127.0.0.1", 1),  # outside its own ranges, inside another user's: dummy hash
    ("order-sync", SECRET, "203.0.113.9", 0),  # outside every range: no hash, whoever the client is
    ("no-such-client", "wrong-secret", "203.0.113.9", 0),
    ("order-sync", "wrong-secret", "203.0.113.9", 0),
])
def test_every_refusal_is_the_same_answer_and_the_hash_depends_on_the_address_only(
        instance, scrypt_calls, user, secret, remote, hashes):
    _, client = instance
    reference = _refusal(token_with_secret(client, secret="wrong-secret"))
    scrypt_calls.clear()
    assert _refusal(token_with_secret(client, user=user, secret=secret, remote=remote)) == reference
    assert len(scrypt_calls) == hashes


def test_a_suspended_user_is_refused_like_an_unknown_one(instance, applied, runner, tmp_path):
    import json

    from tests.security.auth_landscape import LANDSCAPE

    _, client = instance
    reference = _refusal(token_with_secret(client, user="no-such-client"))
    assert token_with_secret(client, user="far-sync", secret=FAR_SECRET, remote="192.0.2.7").status_code == 200
    text = LANDSCAPE.format(jwk=json.dumps(applied.client_key.as_dict(private=False)))
    path = tmp_path / "suspended.yaml"
    path.write_text(text.replace("  - id: far-sync\n", "  - id: far-sync\n    status: suspended\n"))
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output
    # Client authentication reads the user from the database: the suspension applies at once.
    assert _refusal(token_with_secret(client, user="far-sync", secret=FAR_SECRET, remote="192.0.2.7")) == reference


# --- limits on failed client authentication -----------------------------------------------------------

def test_a_guesser_is_stopped_per_client_and_address_and_then_costs_no_hash(instance, scrypt_calls):
    _, client = instance
    for _ in range(3):
        _refusal(token_with_secret(client, secret="guess", remote="10.1.0.66"))
    scrypt_calls.clear()
    for _ in range(20):
        resp = oauth_error(token_with_secret(client, secret="guess", remote="10.1.0.66"), 429, "slow_down")
        assert int(resp.headers["Retry-After"]) > 0
    # Even the right secret from that address waits: nothing is checked at all.
    oauth_error(token_with_secret(client, remote="10.1.0.66"), 429, "slow_down")
    assert scrypt_calls == []
    # Positive control: the client, from another allowed address, gets in at once.
    assert token_with_secret(client, remote="10.1.0.5").status_code == 200


def test_one_address_guessing_across_client_ids_is_stopped(instance, scrypt_calls):
    _, client = instance
    for i in range(8):
        _refusal(token_with_secret(client, user=f"guess-{i}", secret="guess", remote="10.1.0.77"))
    scrypt_calls.clear()
    oauth_error(token_with_secret(client, user="guess-x", secret="guess", remote="10.1.0.77"), 429, "slow_down")
    assert scrypt_calls == []
    assert token_with_secret(client, remote="10.1.0.8").status_code == 200


def test_once_a_client_id_is_under_attack_only_clean_addresses_get_a_check(instance, scrypt_calls):
    _, client = instance
    for i in range(5):  # five addresses, one failure each: the per-client limit is used up
        _refusal(token_with_secret(client, secret="guess", remote=f"10.1.1.{i}"))
    scrypt_calls.clear()
    # An address that already failed for this client gets no hash now...
    oauth_error(token_with_secret(client, secret="guess", remote="10.1.1.0"), 429, "slow_down")
    assert scrypt_calls == []
    # ...while the client, from an address with no failure, still gets in.
    assert token_with_secret(client, remote="10.1.2.9").status_code == 200


@pytest.mark.parametrize("forged", ["10.1.0.1", "10.1.0.2, 10.1.0.3", "127.0.0.1", "unknown", "::1"])
def test_a_forged_x_forwarded_for_does_not_reset_the_count(instance, scrypt_calls, forged):
    """The peer is not a trusted proxy, so every request is counted against the peer's address."""
    _, client = instance
    for i in range(3):
        _refusal(token_with_secret(client, secret="guess", remote="10.1.0.99",
                                   headers={"X-Forwarded-For": f"10.1.9.{i}"}))
    scrypt_calls.clear()
    oauth_error(token_with_secret(client, secret="guess", remote="10.1.0.99",
                                  headers={"X-Forwarded-For": forged}), 429, "slow_down")
    assert scrypt_calls == []


def test_behind_a_trusted_proxy_each_client_address_counts_alone(applied, govern_instance):
    _, client = govern_instance(trusted_proxies=("10.9.0.0/16",), **LIMITS)
    for _ in range(3):
        _refusal(token_with_secret(client, secret="guess", remote="10.9.0.1",
                                   headers={"X-Forwarded-For": "10.1.0.66"}))
    oauth_error(token_with_secret(client, secret="guess", remote="10.9.0.1",
                                  headers={"X-Forwarded-For": "10.1.0.66"}), 429, "slow_down")
    # Another client behind the same proxy is not locked out by the guesser.
    assert token_with_secret(client, remote="10.9.0.1", headers={"X-Forwarded-For": "10.1.0.5"}).status_code == 200


def test_private_key_jwt_failures_are_limited_too(instance, applied):
    from joserfc import jwk

    _, client = instance
    rogue = jwk.RSAKey.generate_key(2048, parameters={"kid": "jwt-sync-1"}, private=True)
    for _ in range(3):
        oauth_error(token_with_assertion(client, assertion(rogue), remote="10.1.0.44"), 401, "invalid_client")
    oauth_error(token_with_assertion(client, assertion(applied.client_key), remote="10.1.0.44"), 429, "slow_down")
    assert token_with_assertion(client, assertion(applied.client_key), remote="10.1.0.45").status_code == 200


def test_token_requests_are_limited_per_address(applied, govern_instance, scrypt_calls):
    _, client = govern_instance(ratelimit_token_requests_per_address="4/minute")
    for _ in range(4):
        assert token_with_secret(client).status_code == 200
    scrypt_calls.clear()
    resp = oauth_error(token_with_secret(client), 429, "slow_down")
    assert int(resp.headers["Retry-After"]) > 0 and scrypt_calls == []
    assert token_with_secret(client, remote="10.1.0.5").status_code == 200


@pytest.mark.redis
def test_limits_are_shared_by_processes_through_redis(applied, govern_instance, redis_url, redis_prefix):
    """Two instances (as two gunicorn workers) count failures together in Redis."""
    _, first = govern_instance(redis_url=redis_url, redis_prefix=redis_prefix, **LIMITS)
    _, second = govern_instance(redis_url=redis_url, redis_prefix=redis_prefix, **LIMITS)
    for client in (first, second, first):
        _refusal(token_with_secret(client, secret="guess", remote="10.1.0.33"))
    oauth_error(token_with_secret(second, secret="guess", remote="10.1.0.33"), 429, "slow_down")
    assert token_with_secret(first, remote="10.1.0.34").status_code == 200


@pytest.mark.parametrize("value", ["often", "0/minute", "10 per fortnight", ""])
def test_malformed_limits_are_refused_at_start(tmp_path, value):
    from govern.config import load_settings
    from govern.errors import ConfigurationError

    if value == "":
        # An empty variable leaves the default (the positive control).
        assert load_settings({"GOVERN_HOME": str(tmp_path), "GOVERN_RATELIMIT_CLIENT_FAILURES_PER_CLIENT": value})
        return
    with pytest.raises(ConfigurationError, match="GOVERN_RATELIMIT_CLIENT_FAILURES_PER_CLIENT"):
        load_settings({"GOVERN_HOME": str(tmp_path), "GOVERN_RATELIMIT_CLIENT_FAILURES_PER_CLIENT": value})


# --- the console -------------------------------------------------------------------------------------

@pytest.fixture
def console(services, settings):
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.store.admins import create_admin

    svc = build_services(settings.with_overrides(ratelimit_console_failures_per_account_address="3/15minutes",
                                                 ratelimit_console_failures_per_account="6/15minutes"))
    for name in ("alice-admin", "bob-admin"):
        create_admin(svc.sessions, name, "correct horse battery staple", "admin")
    yield create_app({"TESTING": True}, services=svc)
    svc.close()


def _sign_in(app, username, password="correct horse battery staple", remote="127.0.0.1", headers=None):
    from tests.admin.conftest import csrf_from

    client = app.test_client()
    page = client.get("/admin/login", environ_base={"REMOTE_ADDR": remote})
    return client.post("/admin/login", environ_base={"REMOTE_ADDR": remote}, headers=headers or {},
                       data={"username": username, "password": password,
                             "csrf_token": csrf_from(page.get_data(as_text=True))})


@pytest.mark.parametrize("forged", [None, "10.0.0.1", "127.0.0.2, 10.0.0.3"])
def test_console_guesser_is_limited_even_when_forging_x_forwarded_for(console, forged):
    for i in range(3):
        headers = {"X-Forwarded-For": f"10.7.0.{i}"} if forged else {}
        assert _sign_in(console, "alice-admin", "guess", remote="10.0.0.66", headers=headers).status_code == 401
    resp = _sign_in(console, "alice-admin", remote="10.0.0.66", headers={"X-Forwarded-For": forged} if forged else {})
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    # Positive controls: the same admin from elsewhere, and another admin from the guesser's address.
    assert _sign_in(console, "alice-admin", remote="10.0.0.5").status_code == 302
    assert _sign_in(console, "bob-admin", remote="10.0.0.66").status_code == 302


def test_console_one_person_behind_a_proxy_cannot_lock_every_admin_out(services, settings):
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.store.admins import create_admin

    svc = build_services(settings.with_overrides(trusted_proxies=("10.9.0.0/16",),
                                                 ratelimit_console_failures_per_account_address="3/15minutes"))
    try:
        for name in ("alice-admin", "bob-admin"):
            create_admin(svc.sessions, name, "correct horse battery staple", "admin")
        app = create_app({"TESTING": True}, services=svc)
        for name in ("alice-admin", "bob-admin"):
            for _ in range(5):
                _sign_in(app, name, "guess", remote="10.9.0.1", headers={"X-Forwarded-For": "198.51.100.66"})
        for name in ("alice-admin", "bob-admin"):
            assert _sign_in(app, name, remote="10.9.0.1", headers={"X-Forwarded-For": "198.51.100.10"}).status_code == 302
    finally:
        svc.close()


def test_console_account_wide_limit_leaves_clean_addresses_a_check(console):
    for i in range(6):
        assert _sign_in(console, "alice-admin", "guess", remote=f"10.0.1.{i}").status_code == 401
    assert _sign_in(console, "alice-admin", "guess", remote="10.0.1.0").status_code == 429
    assert _sign_in(console, "alice-admin", remote="10.0.2.1").status_code == 302
