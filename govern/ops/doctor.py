"""`govern doctor`: what is wrong with this instance, and how to fix it.

Each check reports ok, or what is wrong and one fix. Nothing is created or changed: a SQLite file that does
not exist is reported, never opened (opening would create it); the local master key is read, never made.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from govern.cache import build_cache
from govern.config import DEVELOPMENT_PUBLIC_URL
from govern.policy.guardrails import policies_directory, validate_directory
from govern.secrets.keys import key_file_path, load_keyring
from govern.secrets.vault import VaultSecretStore
from govern.store.db import current_revisions, describe_database, head_revisions, make_engine, sqlite_path


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _error_text(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    return detail.strip().splitlines()[0][:300]


def _redacted_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_instance(settings) -> Check:
    home = settings.home.resolve()
    if home.is_dir():
        return Check("instance", True, str(home))
    return Check("instance", False, f"{home} does not exist",
                 "run `govern init` to create an instance there, or run from your instance's folder "
                 "(or set GOVERN_HOME)")


def check_database(settings) -> tuple[Check, sa.Engine | None]:
    """The check, and an engine when the database answered (for the local store's check)."""
    where = describe_database(settings.database_url)
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        return Check("database", False, f"{where}: the file does not exist", "run `govern init`"), None
    engine = make_engine(settings.database_url)
    try:
        current, heads = current_revisions(engine), head_revisions(engine)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is what this check reports
        engine.dispose()
        return Check("database", False, f"{where}: cannot connect: {_error_text(exc)}",
                     "check GOVERN_DATABASE_URL and that the database server is running"), None
    at, head = ", ".join(sorted(current)) or "none", ", ".join(sorted(heads))
    if not current:
        return Check("database", False, f"{where}: no schema (migration head {head})", "run `govern init`"), engine
    if current != heads:
        return Check("database", False, f"{where}: schema at {at}, migration head {head} (behind)",
                     "run `govern db upgrade`"), engine
    return Check("database", True, f"{where}: schema at the migration head ({head})"), engine


def check_secret_store(settings, engine) -> Check:
    if settings.secret_store == "vault":
        where = f"vault at {settings.vault_addr} (mount {settings.vault_mount!r})"
        try:
            store = VaultSecretStore.from_settings(settings, timeout=3.0)
            try:
                store.ping()
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 - reported
            return Check("secret store", False, f"{where}: unreachable: {_error_text(exc)}",
                         "start Vault/OpenBao there, or set GOVERN_VAULT_ADDR and its credentials "
                         "(GOVERN_VAULT_TOKEN or GOVERN_VAULT_ROLE_ID/GOVERN_VAULT_SECRET_ID) to the right server")
        return Check("secret store", True, f"{where}: reachable, govern's token valid")
    source = "GOVERN_MASTER_KEY" if settings.master_key else str(key_file_path(settings.home.resolve()))
    try:
        keyring = load_keyring(settings.master_key, settings.home, create=False)
    except Exception as exc:  # noqa: BLE001 - reported
        return Check("secret store", False, f"local: {_error_text(exc)}",
                     "run `govern init` (it creates the key file), or set GOVERN_MASTER_KEY")
    count = len(getattr(keyring, "keys", ()) or ())
    reach = "ciphertexts in the database" if engine is not None else "the database is not reachable (see above)"
    return Check("secret store", engine is not None,
                 f"local, {count or 'its'} master key(s) from {source}; {reach}",
                 "" if engine is not None else "fix the database first")


def check_redis(settings) -> Check:
    if not settings.redis_url:
        return Check("redis", True, "not configured: shared state is kept in the database (set GOVERN_REDIS_URL "
                                    "for Redis when the database should not carry it)")
    where = _redacted_url(settings.redis_url)
    try:
        build_cache(settings.redis_url, settings.redis_prefix).ping()
    except Exception as exc:  # noqa: BLE001 - reported
        return Check("redis", False, f"{where}: unreachable: {type(exc).__name__}",
                     "start Redis there, or fix GOVERN_REDIS_URL (or unset it for one process)")
    return Check("redis", True, f"{where}: reachable")


def check_policies(settings) -> Check:
    directory = policies_directory(settings).resolve()
    reports, problems = validate_directory(directory)
    bad = problems + [f"{r.file}: {r.policy_id}: {'; '.join(r.errors)}" for r in reports if not r.ok]
    if bad:
        return Check("policies", False, f"{len(bad)} problem(s) in {directory}, first: {bad[0]}",
                     f"`govern policies validate {directory}` lists each one; fix them, or set GOVERN_POLICIES_DIR")
    return Check("policies", True, f"{len(reports)} policies valid in {directory}")


def check_public_url(settings) -> Check:
    """GOVERN_PUBLIC_URL: the URL clients reach govern at (token endpoint, assertions' audience, callbacks)."""
    url = settings.public_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Check("public URL", False, f"{url!r} is not an http(s) URL",
                     "set GOVERN_PUBLIC_URL to the URL clients reach govern at, e.g. https://govern.example.com")
    if settings.production and parts.scheme != "https":
        return Check("public URL", False, f"{url} is not https (production)", "set GOVERN_PUBLIC_URL to an https URL")
    if url == DEVELOPMENT_PUBLIC_URL and not os.environ.get("GOVERN_PUBLIC_URL"):
        return Check("public URL", True, f"{url} (the development default, govern serve's address; set "
                                         "GOVERN_PUBLIC_URL when clients reach govern elsewhere)")
    return Check("public URL", True, url)


def run_checks(settings) -> list[Check]:
    checks = [check_instance(settings)]
    database, engine = check_database(settings)
    checks.append(database)
    try:
        checks.append(check_secret_store(settings, engine))
    finally:
        if engine is not None:
            engine.dispose()
    checks += [check_redis(settings), check_policies(settings), check_public_url(settings)]
    return checks
