"""Unit tier: the response mapping on a fake transport answer, the cipher, and sealed cache entries."""
from __future__ import annotations

import datetime as dt

import pytest

from govern.broker.upstream.cipher import AesGcmCipher, CacheCipherError
from govern.broker.upstream.errors import UpstreamInvalidClient, UpstreamInvalidGrant
from govern.broker.upstream.http import HttpAnswer, parse_token_response
from govern.broker.upstream.token_cache import open_token, seal_token
from govern.domain.access import UpstreamToken
from govern.domain.secret import Secret
from govern.errors import RateLimited, UpstreamError, UpstreamUnavailable


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


def test_cipher_round_trip_and_tamper():
    cipher = AesGcmCipher.derived_from("instance-key")
    blob = cipher.seal(b"hello")
    assert b"hello" not in blob and cipher.open(blob) == b"hello"
    with pytest.raises(CacheCipherError):
        cipher.open(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(CacheCipherError):
        AesGcmCipher.derived_from("another-instance").open(blob)


def test_a_sealed_entry_opens_only_under_its_own_key():
    cipher = AesGcmCipher.random()
    token = UpstreamToken(Secret("at_value"), "Bearer", dt.datetime.now(dt.timezone.utc), ("a",),
                          {"upstream_status": 200, "fetched_at": "x"})
    blob = seal_token(cipher, "k1", token)
    opened = open_token(cipher, "k1", blob)
    assert opened.access_token.reveal() == "at_value" and opened.scopes == ("a",)
    assert "upstream_status" not in opened.extra  # a cache hit made no upstream call
    assert open_token(cipher, "k2", blob) is None
    assert open_token(cipher, "k1", b"garbage") is None


def test_the_secrets_packages_cipher_is_used_when_wired(broker_services, fake_upstream):
    from tests.broker_upstream.conftest import wire_credential

    sealed = []

    class Recording:
        inner = AesGcmCipher.random()

        def seal(self, data):
            sealed.append(1)
            return self.inner.seal(data)

        def open(self, data):
            return self.inner.open(data)

    broker_services.extras["cache_cipher"] = Recording()  # wired after the broker, as a merge may order it
    names = wire_credential(broker_services, fake_upstream)
    broker_services.upstream_tokens.get_token(names["named_credential"], "default", ("orders.read",))
    assert sealed
