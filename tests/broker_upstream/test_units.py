"""Unit tier: the response mapping on a fake transport answer, the cipher, and sealed cache entries."""
from __future__ import annotations

import datetime as dt

import pytest

from govern.broker.upstream.errors import UpstreamInvalidClient, UpstreamInvalidGrant
from govern.broker.upstream.http import HttpAnswer, parse_token_response
from govern.broker.upstream.token_cache import open_token, seal_token
from govern.domain.access import UpstreamToken
from govern.domain.secret import Secret
from govern.errors import RateLimited, UpstreamError, UpstreamUnavailable
from govern.secrets.cipher import CacheCipher
from govern.secrets.errors import SecretIntegrityError
from govern.secrets.keys import KeyRing, new_key


@pytest.mark.parametrize("answer,error", [
    (HttpAnswer(429, {"retry-after": "12"}, {}), RateLimited),
    (HttpAnswer(503, {}, None), UpstreamUnavailable),
    (HttpAnswer(400, {}, {"error": "invalid_grant", "error_description": "rt_secret-ish"}), UpstreamInvalidGrant),
    (HttpAnswer(401, {}, {"error": "invalid_client"}), UpstreamInvalidClient),
    (HttpAnswer(400, {}, {"error": "invalid_scope"}), UpstreamError),
    (HttpAnswer(200, {}, {"token_type": "Bearer"}), UpstreamError),
    (HttpAnswer(200, {}, None), UpstreamError),
])
def test_token_endpoint_answers_map_into_the_error_tree(answer, error):
    with pytest.raises(error) as err:
        parse_token_response(answer)
    assert "rt_secret" not in str(err.value.to_problem())


def test_retry_after_is_passed_on():
    with pytest.raises(RateLimited) as err:
        parse_token_response(HttpAnswer(429, {"Retry-After": "12"}, {}))
    assert err.value.headers == {"Retry-After": "12"} and err.value.extra["retry_after"] == 12


def local_cipher() -> CacheCipher:
    return CacheCipher(keyring=KeyRing([new_key()]))


def test_cipher_round_trip_and_tamper():
    cipher = local_cipher()
    blob = cipher.seal(b"hello")
    assert b"hello" not in blob and cipher.open(blob) == b"hello"
    with pytest.raises(SecretIntegrityError):
        cipher.open(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(SecretIntegrityError):
        local_cipher().open(blob)  # another instance's master key


def test_a_sealed_entry_opens_only_under_its_own_key():
    cipher = local_cipher()
    token = UpstreamToken(Secret("at_value"), "Bearer", dt.datetime.now(dt.UTC), ("a",),
                          {"upstream_status": 200, "fetched_at": "x"})
    blob = seal_token(cipher, "k1", token)
    opened = open_token(cipher, "k1", blob)
    assert opened.access_token.reveal() == "at_value" and opened.scopes == ("a",)
    assert "upstream_status" not in opened.extra  # a cache hit made no upstream call
    assert open_token(cipher, "k2", blob) is None
    assert open_token(cipher, "k1", b"garbage") is None


def test_the_secrets_packages_cipher_seals_cached_tokens(broker_services, fake_upstream):
    """One place encrypts (govern.secrets): the broker's cache holds only what its CacheCipher sealed."""
    from govern.broker.upstream.token_cache import cache_key
    from tests.broker_upstream.conftest import wire_credential

    cipher = broker_services.cache_cipher
    assert broker_services.upstream_tokens.tokens.cipher is cipher
    names = wire_credential(broker_services, fake_upstream)
    token = broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    key = cache_key(names["named_credential"], "default", ("orders.read",))
    sealed = broker_services.upstream_tokens.tokens.cache.get(key)
    assert sealed and token.access_token.reveal().encode() not in sealed
    assert open_token(cipher, key, sealed).access_token.reveal() == token.access_token.reveal()
