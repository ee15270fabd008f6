"""CacheCipher: encrypts data govern caches at rest (for example the broker's cached upstream tokens).

    cipher = services.cache_cipher
    blob = cipher.seal(token_bytes)     # store `blob` in the cache (Redis or memory)
    token_bytes = cipher.open(blob)     # raises SecretIntegrityError if the blob was altered

- With the vault store, and the transit engine mounted and usable, the data is encrypted by Vault's
  transit engine (`POST /transit/encrypt/:name`), so the key never leaves Vault.
- Otherwise AES-256-GCM with a key derived by HKDF (RFC 5869) from the local master key. The blob names
  the master key it came from, so blobs made before a key rotation still open while the old key is listed.

Blobs are self-describing (prefix `t1:` transit, `l1:` local), so a cache filled under one mode does not
turn into garbage under the other: a blob that cannot be opened raises, and the caller refetches.
"""
from __future__ import annotations

import os
from typing import Protocol
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from govern.secrets.errors import SecretIntegrityError
from govern.secrets.keys import KeyRing, MasterKey
from govern.errors import ConfigurationError

_TRANSIT = b"t1:"
_LOCAL = b"l1:"
_AAD = b"govern/cache-cipher/v1"
_NONCE = 12
_KEY_ID_LEN = 16


class Transit(Protocol):
    def encrypt(self, data: bytes) -> str: ...
    def decrypt(self, ciphertext: str) -> bytes: ...


def derive_cache_key(master: MasterKey) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"govern cache cipher v1").derive(master.material)


class CacheCipher:
    """seal/open for cached data; `mode` says which engine seals ("transit" or "local")."""

    def __init__(self, *, keyring: KeyRing | Callable[[], KeyRing] | None = None,
                 transit: Transit | None = None, transit_available: Callable[[], bool] | None = None):
        self._keyring: KeyRing | None = keyring if isinstance(keyring, KeyRing) else None
        self._keyring_source = None if isinstance(keyring, KeyRing) else keyring
        self._transit = transit
        self._transit_available = transit_available
        self._use_transit: bool | None = None if transit is not None else False

    @property
    def mode(self) -> str:
        return "transit" if self._transit_on() else "local"

    def seal(self, data: bytes) -> bytes:
        if self._transit_on() and self._transit is not None:
            return _TRANSIT + self._transit.encrypt(data).encode("ascii")
        key = self._keys().current
        nonce = os.urandom(_NONCE)
        body = AESGCM(derive_cache_key(key)).encrypt(nonce, data, _AAD)
        return _LOCAL + key.key_id.encode("ascii").ljust(_KEY_ID_LEN, b" ") + nonce + body

    def open(self, blob: bytes) -> bytes:
        if blob.startswith(_TRANSIT):
            if self._transit is None:
                raise SecretIntegrityError("a cached blob was sealed by the transit engine, which is not configured")
            return self._transit.decrypt(blob[len(_TRANSIT):].decode("ascii"))
        if not blob.startswith(_LOCAL) or len(blob) < len(_LOCAL) + _KEY_ID_LEN + _NONCE + 16:
            raise SecretIntegrityError("a cached blob is not in a format govern wrote")
        rest = blob[len(_LOCAL):]
        key_id, nonce, body = rest[:_KEY_ID_LEN].decode("ascii").strip(), rest[_KEY_ID_LEN:_KEY_ID_LEN + _NONCE], \
            rest[_KEY_ID_LEN + _NONCE:]
        key = self._keys().by_id(key_id)
        if key is None:
            raise SecretIntegrityError(f"a cached blob was sealed by master key {key_id}, which is not in the key list")
        try:
            return AESGCM(derive_cache_key(key)).decrypt(nonce, body, _AAD)
        except InvalidTag:
            raise SecretIntegrityError("a cached blob does not authenticate (altered or truncated)") from None

    def _transit_on(self) -> bool:
        if self._use_transit is None:  # probed once, lazily: building services must not need the network
            self._use_transit = bool(self._transit_available()) if self._transit_available else True
        return self._use_transit

    def _keys(self) -> KeyRing:
        if self._keyring is None:
            if self._keyring_source is None:
                raise ConfigurationError("the cache cipher needs the transit engine or a local master key")
            self._keyring = self._keyring_source()
        return self._keyring
