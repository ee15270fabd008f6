"""CacheCipher in local mode (transit mode is tested against OpenBao in test_vault_store.py)."""
from __future__ import annotations

import pytest

from govern.secrets.cipher import CacheCipher
from govern.secrets.errors import SecretIntegrityError
from govern.secrets.keys import KeyRing, new_key


def test_local_seal_open_round_trip_and_rotation():
    old = new_key()
    cipher = CacheCipher(keyring=KeyRing([old]))
    assert cipher.mode == "local"
    blob = cipher.seal(b"cached upstream token")
    assert b"cached upstream token" not in blob
    assert cipher.open(blob) == b"cached upstream token"
    rotated = CacheCipher(keyring=KeyRing([new_key(), old]))
    assert rotated.open(blob) == b"cached upstream token"
    assert rotated.open(rotated.seal(b"x")) == b"x"
    with pytest.raises(SecretIntegrityError, match="not in the key list"):
        CacheCipher(keyring=KeyRing([new_key()])).open(blob)


def test_tampered_and_foreign_blobs_are_refused():
    cipher = CacheCipher(keyring=KeyRing([new_key()]))
    blob = bytearray(cipher.seal(b"data"))
    blob[-1] ^= 1
    with pytest.raises(SecretIntegrityError, match="does not authenticate"):
        cipher.open(bytes(blob))
    with pytest.raises(SecretIntegrityError, match="format"):
        cipher.open(b"plain text")
    with pytest.raises(SecretIntegrityError, match="transit"):
        cipher.open(b"t1:vault:v1:abc")


def test_services_offer_a_cache_cipher(services):
    cipher = services.cache_cipher
    assert cipher.open(cipher.seal(b"abc")) == b"abc"
