"""Settings from GOVERN_* environment variables, with no insecure defaults in production.

Read once by the composition root (`govern.app.create_app` or the CLI) and passed inward; nothing
reads the environment at import time.
"""
from __future__ import annotations

import ipaddress
import os
import secrets as _random
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from collections.abc import Mapping
from urllib.parse import urlsplit

from govern.errors import ConfigurationError

ENVIRONMENTS = ("development", "production")
DEVELOPMENT_PUBLIC_URL = "http://127.0.0.1:8000"
RATE_LIMIT_FIELDS = ("ratelimit_client_failures_per_address_client", "ratelimit_client_failures_per_address",
                     "ratelimit_client_failures_per_client", "ratelimit_token_requests_per_address",
                     "ratelimit_console_failures_per_account", "ratelimit_console_failures_per_account_address")
SECRET_STORES = ("local", "vault")


@dataclass(frozen=True)
class Settings:
    home: Path = Path("./instance")
    env: str = "development"
    database_url: str = ""
    secret_store: str = "local"
    master_key: str | None = None
    vault_addr: str | None = None
    vault_token: str | None = field(default=None, repr=False)
    vault_role_id: str | None = None
    vault_secret_id: str | None = field(default=None, repr=False)
    vault_mount: str = "secret"
    vault_namespace: str | None = None
    vault_kubernetes_role: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "govern:"
    trusted_proxies: tuple[str, ...] = ()
    secret_key: str | None = field(default=None, repr=False)
    admin_password: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    token_leeway_seconds: int = 60
    # The cross-process refresh lock is a lease this long, renewed while the upstream call runs: a holder
    # that dies blocks the others for at most this long (govern.broker.upstream.single_flight).
    refresh_lease_seconds: int = 5
    # The proxy's bulkhead: concurrent upstream calls per system and process, unless the system's contract
    # sets `max_concurrent_calls` (govern.broker.proxy.bulkhead).
    proxy_max_concurrent_calls: int = 32
    # The proxy's upstream transport (govern.broker.proxy.transport): connections open to one upstream origin,
    # idle and in use; and the size a compressed answer may reach once decoded (a gzip bomb stops there).
    proxy_max_connections_per_origin: int = 64
    proxy_max_decoded_bytes: int = 32 * 1024 * 1024
    issuer: str = "govern"
    # The one URL clients use to reach govern (scheme, host, port, optional path prefix). The token URL a
    # client assertion names (aud), the redirect_uri of principal connections and the metadata URLs are
    # built from it, never from a request's Host. Required (https) in production.
    public_url: str = DEVELOPMENT_PUBLIC_URL
    # Bearer token that /metrics requires when set; required in production unless metrics_enabled is off.
    metrics_token: str | None = field(default=None, repr=False)
    metrics_enabled: bool = True
    # Rate limits, in the `limits` library's notation ("N per period", e.g. "10/15minutes").
    ratelimit_client_failures_per_address_client: str = "10/15minutes"
    ratelimit_client_failures_per_address: str = "50/15minutes"
    ratelimit_client_failures_per_client: str = "100/15minutes"
    ratelimit_token_requests_per_address: str = "600/minute"
    ratelimit_console_failures_per_account: str = "20/15minutes"
    ratelimit_console_failures_per_account_address: str = "5/15minutes"
    session_lifetime_seconds: int = 8 * 3600
    alert_webhook_url: str | None = None
    alert_webhook_secret: str | None = field(default=None, repr=False)
    # The worker alerts this many days before a client secret, refresh token or certificate expires (docs/expiry.md).
    expiry_alert_days: int = 30
    policies_dir: Path | None = None  # None: the instance folder's policies/, else the packaged ones
    access_token_lifetime_seconds: int = 900
    # The IP guardrail (policies/020_require_ip_restrictions.cedar) and the audit's GOV-NET-002 refuse an
    # integration user's range with a shorter prefix than these.
    min_ipv4_prefix: int = 8
    min_ipv6_prefix: int = 32
    # Optional console single sign-on (OpenID Connect); users must exist already (roles stay in govern).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    oidc_username_claim: str = "email"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.trusted_proxies)

    def public_endpoint(self, path: str) -> str:
        """An absolute URL of govern's own, built from GOVERN_PUBLIC_URL (never from a request's Host)."""
        return self.public_url.rstrip("/") + "/" + path.lstrip("/")

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)


_ENV_NAMES = {
    "home": "GOVERN_HOME",
    "env": "GOVERN_ENV",
    "database_url": "GOVERN_DATABASE_URL",
    "secret_store": "GOVERN_SECRET_STORE",
    "master_key": "GOVERN_MASTER_KEY",
    "vault_addr": "GOVERN_VAULT_ADDR",
    "vault_token": "GOVERN_VAULT_TOKEN",
    "vault_role_id": "GOVERN_VAULT_ROLE_ID",
    "vault_secret_id": "GOVERN_VAULT_SECRET_ID",
    "vault_mount": "GOVERN_VAULT_MOUNT",
    "vault_namespace": "GOVERN_VAULT_NAMESPACE",
    "vault_kubernetes_role": "GOVERN_VAULT_KUBERNETES_ROLE",
    "redis_url": "GOVERN_REDIS_URL",
    "redis_prefix": "GOVERN_REDIS_PREFIX",
    "trusted_proxies": "GOVERN_TRUSTED_PROXIES",
    "secret_key": "GOVERN_SECRET_KEY",
    "admin_password": "GOVERN_ADMIN_PASSWORD",
    "log_level": "GOVERN_LOG_LEVEL",
    "token_leeway_seconds": "GOVERN_TOKEN_LEEWAY_SECONDS",
    "refresh_lease_seconds": "GOVERN_REFRESH_LEASE_SECONDS",
    "proxy_max_concurrent_calls": "GOVERN_PROXY_MAX_CONCURRENT_CALLS",
    "proxy_max_connections_per_origin": "GOVERN_PROXY_MAX_CONNECTIONS_PER_ORIGIN",
    "proxy_max_decoded_bytes": "GOVERN_PROXY_MAX_DECODED_BYTES",
    "issuer": "GOVERN_ISSUER",
    "public_url": "GOVERN_PUBLIC_URL",
    "metrics_token": "GOVERN_METRICS_TOKEN",
    "metrics_enabled": "GOVERN_METRICS_ENABLED",
    "ratelimit_client_failures_per_address_client": "GOVERN_RATELIMIT_CLIENT_FAILURES_PER_ADDRESS_CLIENT",
    "ratelimit_client_failures_per_address": "GOVERN_RATELIMIT_CLIENT_FAILURES_PER_ADDRESS",
    "ratelimit_client_failures_per_client": "GOVERN_RATELIMIT_CLIENT_FAILURES_PER_CLIENT",
    "ratelimit_token_requests_per_address": "GOVERN_RATELIMIT_TOKEN_REQUESTS_PER_ADDRESS",
    "ratelimit_console_failures_per_account": "GOVERN_RATELIMIT_CONSOLE_FAILURES_PER_ACCOUNT",
    "ratelimit_console_failures_per_account_address": "GOVERN_RATELIMIT_CONSOLE_FAILURES_PER_ACCOUNT_ADDRESS",
    "session_lifetime_seconds": "GOVERN_SESSION_LIFETIME_SECONDS",
    "alert_webhook_url": "GOVERN_ALERT_WEBHOOK_URL",
    "alert_webhook_secret": "GOVERN_ALERT_WEBHOOK_SECRET",
    "expiry_alert_days": "GOVERN_EXPIRY_ALERT_DAYS",
    "policies_dir": "GOVERN_POLICIES_DIR",
    "access_token_lifetime_seconds": "GOVERN_ACCESS_TOKEN_LIFETIME_SECONDS",
    "min_ipv4_prefix": "GOVERN_MIN_IPV4_PREFIX",
    "min_ipv6_prefix": "GOVERN_MIN_IPV6_PREFIX",
    "oidc_issuer": "GOVERN_OIDC_ISSUER",
    "oidc_client_id": "GOVERN_OIDC_CLIENT_ID",
    "oidc_client_secret": "GOVERN_OIDC_CLIENT_SECRET",
    "oidc_username_claim": "GOVERN_OIDC_USERNAME_CLAIM",
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build settings from the environment, then apply explicit overrides, then check them."""
    environ = os.environ if environ is None else environ
    values: dict = {}
    for f in fields(Settings):
        raw = environ.get(_ENV_NAMES[f.name])
        if raw is None or raw == "":
            continue
        values[f.name] = _coerce(f.name, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for path_field in ("home", "policies_dir"):
        if path_field in values:
            values[path_field] = Path(values[path_field])
    if "public_url" in values:
        values["public_url"] = str(values["public_url"]).strip().rstrip("/")
    settings = Settings(**values)
    if not settings.database_url:
        db_path = (settings.home / "govern.db").resolve()
        settings = replace(settings, database_url=f"sqlite:///{db_path}")
    check(settings)
    return settings


def _coerce(name: str, raw: str):
    if name == "trusted_proxies":
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if name in ("token_leeway_seconds", "session_lifetime_seconds", "access_token_lifetime_seconds",
                "refresh_lease_seconds", "proxy_max_concurrent_calls"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{_ENV_NAMES[name]} must be a whole number of seconds") from None
    if name in ("proxy_max_connections_per_origin", "proxy_max_decoded_bytes"):
        if not raw.strip().isascii() or not raw.strip().isdigit():
            raise ConfigurationError(f"{_ENV_NAMES[name]} must be a whole number")
        return int(raw.strip())
    if name == "expiry_alert_days":
        if not raw.strip().isascii() or not raw.strip().isdigit():
            raise ConfigurationError("GOVERN_EXPIRY_ALERT_DAYS must be a whole number of days (e.g. 30)")
        return int(raw.strip())
    if name in ("min_ipv4_prefix", "min_ipv6_prefix"):
        if not raw.strip().isascii() or not raw.strip().isdigit():
            raise ConfigurationError(f"{_ENV_NAMES[name]} must be a prefix length (e.g. 8)")
        return int(raw.strip())
    if name == "metrics_enabled":
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError("GOVERN_METRICS_ENABLED must be true or false")
    if name == "public_url":
        return raw.strip().rstrip("/")
    return raw


def _public_url_problem(url: str) -> str | None:
    """What is wrong with GOVERN_PUBLIC_URL, if anything: an absolute http(s) URL with a host, no query."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "GOVERN_PUBLIC_URL is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "GOVERN_PUBLIC_URL must be an absolute http(s) URL such as https://govern.example.com"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "GOVERN_PUBLIC_URL must not carry credentials, a query or a fragment"
    return None


def check(settings: Settings) -> None:
    """Refuse settings that are malformed anywhere, or unsafe in production."""
    if settings.env not in ENVIRONMENTS:
        raise ConfigurationError(f"GOVERN_ENV must be one of {', '.join(ENVIRONMENTS)}")
    if settings.secret_store not in SECRET_STORES:
        raise ConfigurationError(f"GOVERN_SECRET_STORE must be one of {', '.join(SECRET_STORES)}")
    for cidr in settings.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigurationError(f"GOVERN_TRUSTED_PROXIES has a malformed CIDR: {cidr!r}") from None
    if not 0 < settings.access_token_lifetime_seconds <= 86400:
        raise ConfigurationError("GOVERN_ACCESS_TOKEN_LIFETIME_SECONDS must be between 1 and 86400")
    if not 1 <= settings.refresh_lease_seconds <= 300:
        raise ConfigurationError("GOVERN_REFRESH_LEASE_SECONDS must be between 1 and 300")
    if not 1 <= settings.proxy_max_concurrent_calls <= 10000:
        raise ConfigurationError("GOVERN_PROXY_MAX_CONCURRENT_CALLS must be between 1 and 10000")
    if not 1 <= settings.proxy_max_connections_per_origin <= 10000:
        raise ConfigurationError("GOVERN_PROXY_MAX_CONNECTIONS_PER_ORIGIN must be between 1 and 10000")
    if not 64 * 1024 <= settings.proxy_max_decoded_bytes <= 1024 ** 3:
        raise ConfigurationError("GOVERN_PROXY_MAX_DECODED_BYTES must be between 65536 (64 KiB) and 1073741824 (1 GiB)")
    if settings.secret_store == "vault" and not settings.vault_addr:
        raise ConfigurationError("GOVERN_SECRET_STORE=vault needs GOVERN_VAULT_ADDR")
    if not 1 <= settings.min_ipv4_prefix <= 32:
        raise ConfigurationError("GOVERN_MIN_IPV4_PREFIX must be between 1 and 32")
    if not 1 <= settings.min_ipv6_prefix <= 128:
        raise ConfigurationError("GOVERN_MIN_IPV6_PREFIX must be between 1 and 128")
    problem = _public_url_problem(settings.public_url)
    if problem:
        raise ConfigurationError(problem)
    for name in RATE_LIMIT_FIELDS:
        _check_rate_limit(name, getattr(settings, name))
    if not settings.production:
        return
    problems = []
    if not settings.secret_key or len(settings.secret_key) < 32:
        problems.append("GOVERN_SECRET_KEY must be set to at least 32 characters")
    if settings.database_url.startswith("sqlite"):
        problems.append("GOVERN_DATABASE_URL must point at PostgreSQL, not SQLite")
    if settings.secret_store == "vault" and settings.vault_addr and settings.vault_addr.startswith("http://"):
        problems.append("GOVERN_VAULT_ADDR must use https")
    for cidr in settings.trusted_proxies:
        if ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
            problems.append("GOVERN_TRUSTED_PROXIES must not trust every address")
    if settings.secret_store == "local" and not settings.master_key:
        problems.append("GOVERN_MASTER_KEY must be set for the local secret store (no key file in production)")
    if settings.oidc_issuer and not settings.oidc_issuer.startswith("https://"):
        problems.append("GOVERN_OIDC_ISSUER must use https")
    if settings.public_url == DEVELOPMENT_PUBLIC_URL or not settings.public_url.startswith("https://"):
        problems.append("GOVERN_PUBLIC_URL must be set to govern's public https URL (the issuer's and the "
                        "token endpoint's base; never taken from a request's Host)")
    if settings.metrics_enabled and (not settings.metrics_token or len(settings.metrics_token) < 16):
        problems.append("GOVERN_METRICS_TOKEN must be set to at least 16 characters "
                        "(or GOVERN_METRICS_ENABLED=false when metrics are served elsewhere)")
    if problems:
        raise ConfigurationError("refusing to start in production: " + "; ".join(problems))


def _check_rate_limit(name: str, value: str) -> None:
    from limits import parse_many

    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ConfigurationError(f"{_ENV_NAMES[name]} must be a rate such as 10/minute or 10/15minutes")


def instance_secret_key(settings: Settings) -> str:
    """The session signing key: from settings, or (development only) generated once into the instance folder."""
    if settings.secret_key:
        return settings.secret_key
    if settings.production:
        raise ConfigurationError("GOVERN_SECRET_KEY is required in production")
    path = settings.home / "secret_key"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(_random.token_urlsafe(48))
    return path.read_text().strip()
