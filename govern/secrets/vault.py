"""VaultSecretStore: the SecretStore port on HashiCorp Vault or OpenBao, through hvac.

- KV v2 (https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2): `POST /:mount/data/:path`
  with `options.cas` for check-and-set writes, `GET /:mount/data/:path?version=N`,
  `GET /:mount/metadata/:path`, `DELETE /:mount/metadata/:path`, `LIST /:mount/metadata/:path`.
- govern's own identity (vault_auth.py): a token, AppRole or Kubernetes login; the token is renewed
  lazily before its TTL runs out.
- Transit (https://developer.hashicorp.com/vault/api-docs/secret/transit) encrypts cached data when the
  engine is mounted and usable.

Every hvac exception and transport error is translated in ONE table (`_ERRORS`) into govern's error
tree; hvac's own messages (which quote URLs, paths and sometimes request data) never pass through.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
import threading
from typing import Any, TypeVar
from collections.abc import Callable

import hvac
import hvac.exceptions as hx
import requests

from govern.domain.secret import Secret
from govern.errors import GovernError, SecretConflict, SecretNotFound, SecretStoreUnavailable
from govern.ports import Clock, SecretMetadata, SystemClock
from govern.secrets.errors import SecretStorePermissionDenied, VaultRequestRefused
from govern.secrets.vault_auth import VaultAuth, auth_from_settings

log = logging.getLogger("govern.secrets.vault")
T = TypeVar("T")
RETRY_AFTER_SECONDS = 5


def _unavailable(_: Exception) -> GovernError:
    return SecretStoreUnavailable("the vault cannot be reached, is sealed or failed; retry later",
                                  retry_after=RETRY_AFTER_SECONDS)


def _not_found(_: Exception) -> GovernError:
    return SecretNotFound("no secret is stored at that path (or that version)")


def _forbidden(_: Exception) -> GovernError:
    return SecretStorePermissionDenied("the vault refused govern's identity: check its policy and token")


def _invalid(exc: Exception) -> GovernError:
    # KV v2 answers a failed check-and-set with 400 "check-and-set parameter did not match the current version".
    errors = " ".join(getattr(exc, "errors", None) or [])
    if "check-and-set" in errors:
        return SecretConflict("the secret changed since it was read (check-and-set failed)")
    return VaultRequestRefused("the vault refused the request as invalid")


# The one table: hvac exception (by status) or transport error -> govern error. Order matters (first match).
_ERRORS: tuple[tuple[type[BaseException], Callable[[Exception], GovernError]], ...] = (
    (requests.exceptions.ConnectionError, _unavailable),  # refused, reset, DNS
    (requests.exceptions.Timeout, _unavailable),
    (hx.VaultDown, _unavailable),                # 503: sealed or standby without forwarding
    (hx.VaultNotInitialized, _unavailable),      # 501
    (hx.InternalServerError, _unavailable),      # 500
    (hx.BadGateway, _unavailable),               # 502
    (hx.RateLimitExceeded, _unavailable),        # 429
    (hx.InvalidPath, _not_found),                # 404
    (hx.Forbidden, _forbidden),                  # 403: policy, or an expired/revoked token
    (hx.Unauthorized, _forbidden),               # 401
    (hx.InvalidRequest, _invalid),               # 400, including a failed check-and-set
    (hx.UnexpectedError, _unavailable),          # other 5xx and odd answers
    (hx.VaultError, lambda e: VaultRequestRefused("the vault answered with an error")),
    (requests.exceptions.RequestException, _unavailable),
)


def translate(exc: BaseException) -> GovernError | None:
    for kind, make in _ERRORS:
        if isinstance(exc, kind):
            return make(exc)  # type: ignore[arg-type]
    return None


class VaultSecretStore:
    kind = "vault"

    def __init__(self, client: hvac.Client, auth: VaultAuth, *, mount: str = "secret", clock: Clock | None = None,
                 transit_mount: str = "transit", transit_key: str = "govern-cache"):
        self.client = client
        self.auth = auth
        self.mount = mount
        self.clock = clock or SystemClock()
        self.transit = VaultTransit(self, transit_mount, transit_key)
        self._ttl = 0.0           # seconds granted at the last login/renewal; 0: never expires
        self._expires_at: float | None = None   # clock.monotonic() deadline; None: not logged in yet
        self._renewable = False
        self.renewals = 0
        self.logins = 0
        self._token_lock = threading.Lock()  # one login/renewal at a time across request threads

    @classmethod
    def from_settings(cls, settings, *, clock: Clock | None = None, timeout: float = 5.0) -> VaultSecretStore:
        client = hvac.Client(url=settings.vault_addr, namespace=settings.vault_namespace or None, timeout=timeout)
        return cls(client, auth_from_settings(settings), mount=settings.vault_mount, clock=clock)

    # --- the port --------------------------------------------------------------------------------

    def put(self, path: str, value: Secret, *, cas: int | None = None) -> SecretMetadata:
        """POST /:mount/data/:path (KV v2), with options.cas when `cas` is given (0: must not exist)."""
        try:
            resp = self._call(lambda: self.client.secrets.kv.v2.create_or_update_secret(
                path=path, secret={"value": value.reveal()}, cas=cas, mount_point=self.mount))
        except SecretNotFound:  # a write answered 404: no KV v2 engine at that mount
            resp = None
        if resp is None:
            raise VaultRequestRefused(f"the vault has no KV v2 engine mounted at {self.mount!r} (GOVERN_VAULT_MOUNT)")
        data = resp["data"]
        return SecretMetadata(path=path, version=int(data["version"]), created_at=_parse_time(data.get("created_time")),
                              versions=())

    def get(self, path: str, *, version: int | None = None) -> Secret:
        """GET /:mount/data/:path[?version=N]."""
        resp = self._call(lambda: self.client.secrets.kv.v2.read_secret_version(
            path=path, version=version, mount_point=self.mount, raise_on_deleted_version=True))
        data = (resp.get("data") or {}).get("data") or {}
        if "value" not in data:
            raise SecretNotFound("the secret at that path holds no govern value")
        return Secret(data["value"])

    def metadata(self, path: str) -> SecretMetadata:
        """GET /:mount/metadata/:path."""
        resp = self._call(lambda: self.client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.mount))
        data = resp["data"]
        versions = data.get("versions") or {}
        live = tuple(sorted(int(v) for v, info in versions.items()
                            if not info.get("deletion_time") and not info.get("destroyed")))
        current = int(data.get("current_version") or 0)
        if not live or current not in live:
            raise SecretNotFound("no live secret is stored at that path")
        return SecretMetadata(path=path, version=current,
                              created_at=_parse_time(versions[str(current)].get("created_time")), versions=live)

    def delete(self, path: str) -> None:
        """DELETE /:mount/metadata/:path: every version and the metadata."""
        self._call(lambda: self.client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.mount))

    def list_paths(self) -> list[str]:
        """LIST /:mount/metadata/:path, recursively."""
        found: list[str] = []
        pending = [""]
        while pending:
            prefix = pending.pop()
            try:
                resp = self._call(functools.partial(self.client.secrets.kv.v2.list_secrets, path=prefix,
                                                    mount_point=self.mount))
            except SecretNotFound:
                continue
            for key in resp["data"].get("keys", []):
                (pending if key.endswith("/") else found).append(prefix + key)
        return sorted(found)

    def ping(self) -> None:
        """GET /sys/health, then make sure govern's own token is valid (login or renew when due)."""
        self._call(lambda: self.client.sys.read_health_status(method="GET"), authenticated=False)
        self._call(lambda: None)

    def close(self) -> None:
        try:
            self.client.adapter.close()
        except Exception:  # noqa: BLE001, S110 - closing is best effort
            pass

    # --- govern's own token ----------------------------------------------------------------------

    def ensure_token(self) -> None:
        """Log in on first use; renew-self when less than a third of the TTL is left (checked lazily on use).

        A token that cannot be renewed is replaced by a fresh login when the auth method can log in
        again (AppRole, Kubernetes); a plain token that cannot be renewed simply runs out.
        """
        with self._token_lock:
            self._ensure_token_locked()

    def _ensure_token_locked(self) -> None:
        now = self.clock.monotonic()
        if self._expires_at is None:
            self._login()
            return
        if self._ttl <= 0 or self._expires_at - now >= self._ttl / 3:
            return
        if self._renewable:
            try:
                resp = self.client.auth.token.renew_self()
                self._adopt(_token_facts(resp["auth"]))
                self.renewals += 1
                return
            except (hx.Forbidden, hx.InvalidRequest):
                if not self.auth.can_login:
                    raise
        if self.auth.can_login:
            self._login()

    def _login(self) -> None:
        try:
            facts = self.auth.login(self.client)
        except (hx.InvalidRequest, hx.InvalidPath):
            # AppRole answers a wrong role/secret id with 400; an auth method that is not mounted with 404.
            raise SecretStorePermissionDenied(f"the vault refused govern's {self.auth.kind} login") from None
        except requests.exceptions.RequestException:
            raise  # the network: translated by _call's table
        except OSError:
            raise SecretStorePermissionDenied(f"govern cannot read its {self.auth.kind} login credentials") from None
        self._adopt(facts)
        self.logins += 1

    @property
    def token_expires_in(self) -> float | None:
        if self._expires_at is None or self._ttl <= 0:
            return None
        return self._expires_at - self.clock.monotonic()

    def _adopt(self, facts: dict[str, Any]) -> None:
        self._ttl = float(facts["ttl"])
        self._renewable = bool(facts["renewable"])
        self._expires_at = self.clock.monotonic() + self._ttl

    # --- the one place hvac is called ------------------------------------------------------------

    def _call(self, fn: Callable[[], T], *, authenticated: bool = True) -> T:
        try:
            if authenticated:
                self.ensure_token()
            try:
                return fn()
            except hx.Forbidden:
                # An expired or revoked token: log in again once, when the auth method can.
                if not (authenticated and self.auth.can_login):
                    raise
                self._expires_at = None
                self.ensure_token()
                return fn()
        except GovernError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated by the table, or re-raised untouched
            mapped = translate(exc)
            if mapped is None:
                raise
            log.warning("vault call failed", extra={"exc_type": type(exc).__name__, "code": mapped.code})
        # Raised outside the except block, so the hvac exception (whose text quotes URLs and paths)
        # is not even kept as __context__.
        raise mapped


class VaultTransit:
    """The transit engine, for CacheCipher: `encrypt(bytes)->str`, `decrypt(str)->bytes`."""

    def __init__(self, store: VaultSecretStore, mount: str, key: str):
        self.store, self.mount, self.key = store, mount, key

    def available(self) -> bool:
        """True when the transit mount answers and govern's key exists (created here when it may)."""
        client = self.store.client
        try:
            self.store._call(lambda: client.secrets.transit.read_key(name=self.key, mount_point=self.mount))
            return True
        except SecretNotFound:
            pass
        except GovernError:
            return False
        try:
            self.store._call(lambda: client.secrets.transit.create_key(name=self.key, key_type="aes256-gcm96",
                                                                       mount_point=self.mount))
            return True
        except GovernError:
            return False

    def encrypt(self, data: bytes) -> str:
        """POST /:mount/encrypt/:name."""
        plaintext = base64.b64encode(data).decode("ascii")
        resp = self.store._call(lambda: self.store.client.secrets.transit.encrypt_data(
            name=self.key, plaintext=plaintext, mount_point=self.mount))
        return resp["data"]["ciphertext"]

    def decrypt(self, ciphertext: str) -> bytes:
        """POST /:mount/decrypt/:name."""
        resp = self.store._call(lambda: self.store.client.secrets.transit.decrypt_data(
            name=self.key, ciphertext=ciphertext, mount_point=self.mount))
        return base64.b64decode(resp["data"]["plaintext"])


def _token_facts(auth: dict[str, Any]) -> dict[str, Any]:
    return {"ttl": auth.get("lease_duration") or 0, "renewable": bool(auth.get("renewable"))}


def _parse_time(value: str | None) -> dt.datetime | None:
    """Vault's RFC 3339 times carry nanoseconds; Python takes microseconds."""
    if not value:
        return None
    head, _, rest = value.rstrip("Z").partition(".")
    frac = "".join(ch for ch in rest if ch.isdigit())[:6]
    try:
        parsed = dt.datetime.fromisoformat(head + (f".{frac}" if frac else ""))
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC)
