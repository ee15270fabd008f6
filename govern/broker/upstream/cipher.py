"""Encryption at rest for cached upstream tokens (they are never written in clear to Redis or the database).

A cipher has `seal(bytes) -> bytes` and `open(bytes) -> bytes`. govern uses `services.extras["cache_cipher"]`
when the secrets package provides one; otherwise an AES-256-GCM key derived with HKDF-SHA256 (RFC 5869) from
the instance secret key, which every process of one instance shares (so Redis and the lock rows can hold
sealed tokens that any worker can open). The cleartext carries the cache key, so a value copied under
another key does not open (the context binding AES-GCM's associated data would otherwise give).
"""
from __future__ import annotations

import os

from govern.errors import GovernError

_INFO = b"govern upstream token cache v1"


class CacheCipherError(GovernError):
    code = "cache_cipher_error"
    status = 500
    title = "A cached token could not be decrypted"


class AesGcmCipher:
    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    @classmethod
    def derived_from(cls, secret: str) -> "AesGcmCipher":
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
        return cls(key)

    @classmethod
    def random(cls) -> "AesGcmCipher":
        return cls(os.urandom(32))

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return b"\x01" + nonce + self._aead.encrypt(nonce, data, _INFO)

    def open(self, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        if not data or data[:1] != b"\x01":
            raise CacheCipherError("unknown cached token format")
        try:
            return self._aead.decrypt(data[1:13], data[13:], _INFO)
        except InvalidTag:
            raise CacheCipherError("a cached token failed authentication") from None
