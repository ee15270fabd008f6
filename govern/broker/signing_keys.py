"""govern's access-token signing key set (RFC 7517 JWKS, RFC 7518 RS256), rotatable.

One key is active and signs; after `rotate_signing_key` the previous key is *retiring*: it signs
nothing more but stays published at /oauth/jwks.json (and accepted by the authenticator) until every
token it signed has expired, then it is retired and its private half is deleted from the secret store.

The private key lives only in the secret store; the `signing_key` table (govern.store.signing_keys) keeps
the public JWK and the secret's path. Without a secret store, token issuance refuses to start.
Public keys are cached in-process and reloaded every `reload_interval`; an unknown `kid` forces a
reload at most once a second (a key made by another process is known at
once; forged kids cannot hammer the database).
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from joserfc import jwk, jwt

from govern.domain.secret import Secret
from govern.errors import ConfigurationError
from govern.ports import Clock, SecretStore, SigningKeyRecord, SigningKeyRecords

log = logging.getLogger("govern.broker.keys")

ALGORITHM = "RS256"
RSA_BITS = 2048
SECRET_PREFIX = "govern/signing-keys/"  # noqa: S105 - a path prefix in the secret store


@dataclass(frozen=True)
class _PublicKey:
    kid: str
    key: jwk.Key
    jwk: dict
    retire_after: dt.datetime | None


class SigningKeys:
    def __init__(self, records: SigningKeyRecords, secret_store_provider: Callable[[], SecretStore | None], clock: Clock,
                 *, token_lifetime_seconds: int, leeway_seconds: int = 60, reload_interval: float = 5.0):
        self._records = records
        # A callable: the secret store is wired by govern.secrets, possibly after the broker.
        self._secret_store_provider = secret_store_provider
        self._clock = clock
        self._max_lifetime = token_lifetime_seconds
        self._leeway = leeway_seconds
        self._reload_interval = reload_interval
        self._lock = threading.Lock()
        self._public: dict[str, _PublicKey] = {}
        self._loaded_at: float | None = None
        self._signer: tuple[str, jwk.Key] | None = None
        self._forced_at = float("-inf")
        self.forced_reload_interval = 1.0

    # --- publication and verification ---------------------------------------------------------

    def _load(self) -> None:
        self._retire_expired(self._clock.now())
        rows = self._records.published()
        public = {r.kid: _PublicKey(r.kid, jwk.import_key(r.public_jwk), dict(r.public_jwk), r.retire_after)
                  for r in rows}
        active = [r for r in rows if r.state == "active"]
        self._public = public
        self._loaded_at = self._clock.monotonic()
        if self._signer and (not active or active[0].kid != self._signer[0]):
            self._signer = None  # another process rotated: sign with the new key from now on

    def _retire_expired(self, now: dt.datetime) -> None:
        for row in self._records.retire_due(now):
            store = self._secret_store_provider()
            if store is not None:
                try:
                    store.delete(row.secret_path)
                except Exception as exc:  # noqa: BLE001 - retirement must not fail on cleanup
                    log.warning("could not delete a retired signing key", extra={"kid": row.kid,
                                                                                   "exc_type": type(exc).__name__})
            log.info("signing key retired", extra={"kid": row.kid})

    def _fresh(self) -> dict[str, _PublicKey]:
        if self._loaded_at is None or self._clock.monotonic() - self._loaded_at >= self._reload_interval:
            with self._lock:
                if self._loaded_at is None or self._clock.monotonic() - self._loaded_at >= self._reload_interval:
                    self._load()
        return self._public

    def jwks(self) -> dict:
        """The published key set: the active key and every retiring key whose tokens may still be live."""
        now = self._clock.now()
        keys = [k.jwk for k in self._fresh().values() if k.retire_after is None or k.retire_after > now]
        return {"keys": keys}

    def public_key(self, kid: str) -> jwk.Key | None:
        found = self._public.get(kid) if self._loaded_at is not None else None
        if found is None:
            found = self._fresh().get(kid)
        if found is None and self._clock.monotonic() - self._forced_at >= self.forced_reload_interval:
            # A key made by another process a moment ago: look once, at most once per interval.
            with self._lock:
                self._forced_at = self._clock.monotonic()
                self._load()
            found = self._public.get(kid)
        if found is None:
            return None
        if found.retire_after is not None and found.retire_after <= self._clock.now():
            return None
        return found.key

    # --- signing -------------------------------------------------------------------------------

    def _require_store(self):
        store = self._secret_store_provider()
        if store is None:
            raise ConfigurationError("govern cannot issue access tokens without a secret store for its signing "
                                     "keys; configure GOVERN_SECRET_STORE (local or vault)")
        return store

    def _signing_key(self) -> tuple[str, jwk.Key]:
        signer = self._signer
        if signer is not None:
            return signer
        store = self._require_store()
        with self._lock:
            if self._signer is None:
                row = self._records.active_or_create(self._create)
                kid, path = row.kid, row.secret_path
                pem = store.get(path).reveal()
                self._signer = (kid, jwk.RSAKey.import_key(pem, parameters={"kid": kid, "alg": ALGORITHM}))
                self._loaded_at = None  # publish the key we are about to sign with
            return self._signer

    def _create(self) -> SigningKeyRecord:
        """A new key: its private half put in the secret store; the caller stores the record."""
        store = self._require_store()
        kid = f"{self._clock.now():%Y%m%d}-{secrets.token_hex(6)}"
        key = jwk.RSAKey.generate_key(RSA_BITS, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"},
                                      private=True)
        path = SECRET_PREFIX + kid
        store.put(path, Secret(key.as_pem(private=True).decode()), cas=0)
        log.info("signing key created", extra={"kid": kid})
        return SigningKeyRecord(kid=kid, public_jwk=key.as_dict(private=False), secret_path=path, state="active",
                                retire_after=None, alg=ALGORITHM, created_at=self._clock.now())

    def sign(self, claims: dict) -> str:
        kid, key = self._signing_key()
        return jwt.encode({"alg": ALGORITHM, "kid": kid, "typ": "at+jwt"}, claims, key, algorithms=[ALGORITHM])

    def rotate(self) -> str:
        """Make a new key active; the previous ones retire once every token they signed has expired."""
        self._require_store()
        now = self._clock.now()
        with self._lock:
            new = self._records.rotate(now + dt.timedelta(seconds=self._max_lifetime + self._leeway), self._create)
            kid = new.kid
            self._signer = None
            self._loaded_at = None
        return kid


    def retire_expired(self) -> None:
        """Retire retiring keys whose tokens have all expired (idempotent; any process may run it)."""
        with self._lock:
            self._retire_expired(self._clock.now())
            self._loaded_at = None

    def self_test(self) -> bool:
        """Sign a probe with the active key and verify it against the published key: the rotation's test step."""
        kid, _ = self._signing_key()
        token = self.sign({"sub": "govern-signing-key-self-test", "iat": int(self._clock.now().timestamp())})
        key = self.public_key(kid)
        if key is None:
            return False
        try:
            jwt.decode(token, key, algorithms=[ALGORITHM])
        except Exception:  # noqa: BLE001 - any failure means the key does not work
            return False
        return True


def rotate_signing_key(keys: SigningKeys) -> str:
    """Rotate govern's token-signing key (called by the rotation jobs). Returns the new key id."""
    return keys.rotate()


def retire_expired_signing_keys(keys: SigningKeys) -> None:
    """Retire the keys past the lifetime of the tokens they signed (called by every worker pass)."""
    keys.retire_expired()


def self_test_signing_key(keys: SigningKeys) -> bool:
    return keys.self_test()

