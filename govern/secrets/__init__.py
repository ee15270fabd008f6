"""govern.secrets: the only package that imports hvac or does local encryption.

Two SecretStore adapters (govern.ports.SecretStore): `LocalSecretStore` (local.py, the embedded
default) and `VaultSecretStore` (vault.py, HashiCorp Vault / OpenBao KV v2). `CacheCipher` (cipher.py)
encrypts cached data at rest. `SecretService` (service.py) records which secret belongs to what.

The composition root calls `wire(services)`: it sets `services.secret_store`,
`services.cache_cipher`, the "secret_store" readiness check, and the init step that creates
the local key file.
"""
from __future__ import annotations

from typing import Any

from govern.config import Settings
from govern.secrets.keys import load_keyring, key_file_path
from govern.secrets.vault import VaultSecretStore
from govern.secrets.local import LocalSecretStore
from govern.secrets.cipher import CacheCipher


def build_keyring(settings: Settings, *, create: bool | None = None):
    # Development instances get a key file on first use (like the session key); production needs
    # GOVERN_MASTER_KEY (govern.config.check refuses to start without it).
    return load_keyring(settings.master_key, settings.home,
                        create=(not settings.production) if create is None else create)


def build_secret_store(settings: Settings, sessions, *, clock=None):
    if settings.secret_store == "vault":
        return VaultSecretStore.from_settings(settings, clock=clock)
    return LocalSecretStore(sessions, lambda: build_keyring(settings))


def build_cache_cipher(settings: Settings, store):
    keyring = (lambda: store.keyring) if getattr(store, "kind", None) == "local" else (lambda: build_keyring(settings))
    if getattr(store, "kind", None) == "vault":
        return CacheCipher(keyring=keyring, transit=store.transit, transit_available=store.transit.available)
    return CacheCipher(keyring=keyring)


def init_step(services: Any) -> str:
    """`govern init`: make sure the secret store is ready (the local key file exists, mode 0600)."""
    settings = services.settings
    if settings.secret_store == "vault":
        services.secret_store.ping()
        return f"secret store: vault at {settings.vault_addr} (mount {settings.vault_mount!r}) reachable"
    if settings.master_key:
        build_keyring(settings)
        return "secret store: local, master keys from GOVERN_MASTER_KEY"
    path = key_file_path(settings.home)
    existed = path.exists()
    build_keyring(settings, create=True)
    return f"secret store: local, master key file {path} {'present' if existed else 'created'} (mode 0600)"


def wire(services: Any, store: Any = None) -> None:
    store = store or build_secret_store(services.settings, services.sessions, clock=services.clock)
    services.secret_store = store
    services.cache_cipher = build_cache_cipher(services.settings, store)
    services.health_checks["secret_store"] = store.ping
    services.init_steps.append(init_step)
    closer = getattr(store, "close", None)
    if closer is not None:
        services.closers.append(closer)
