"""Recognise secret-looking values in configuration and metadata (seed §6 "Never store credentials in Custom
Settings, custom metadata, or Apex code"). Only the *kind* of match is reported, never the value."""
from __future__ import annotations

import re
from typing import Any
from collections.abc import Iterator
from urllib.parse import urlsplit

SECRET_KEY = re.compile(r"(secret|passw(or)?d|passwd|pwd|token|api[_-]?key|apikey|private[_-]?key|access[_-]?key|"
                        r"credential|signature)", re.I)
# key names that look secret but hold references or public data
NOT_SECRET_KEY = re.compile(r"(_ref|_path|_url|_uri|_endpoint|_type|_policy|_id|_name|_field|lifetime|ttl|header)$", re.I)
VALUE_PATTERNS = (
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("aws_access_key", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("slack_token", re.compile(r"\bxox[abposr]-[0-9A-Za-z-]{10,}")),
    ("slack_webhook", re.compile(r"hooks\.slack\.com/services/[^\s<]+")),
    ("github_token", re.compile(r"\bgh[pousr]_[0-9A-Za-z]{30,}")),
    ("stripe_key", re.compile(r"\b[sr]k_(live|test)_[0-9A-Za-z]{10,}")),
    ("openai_key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("url_userinfo", re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)),
    ("url_query_secret", re.compile(r"[?&](access_token|token|api_key|apikey|key|secret|password|sig)=[^&\s]{6,}", re.I)),
)


PLACEHOLDER = re.compile(r"\{[A-Za-z0-9_. -]+\}|\$\{[^}]+\}|<[A-Za-z0-9_ -]+>|x{6,}|\*{6,}", re.I)


def is_placeholder(value: str) -> bool:
    """A template placeholder such as `{SECRET}` or `${TOKEN}`: a deploy script fills it, nothing leaked."""
    return bool(PLACEHOLDER.fullmatch(value.strip()))


def is_reference(value: str) -> bool:
    """A reference to a secret held elsewhere (Salesforce `{!$Credential.X.key}` merge field, a vault path)."""
    v = value.strip()
    return v.startswith(("{!$Credential.", "{!$credential.", "vault:", "secret://")) or v.startswith("${")


# What a kept model (govern.audit.model_codec) holds in place of a secret-looking value: the kind, never the value.
REDACTED = re.compile(r"\[redacted:([a-z_]+)\]")


def value_kind(value: str) -> str | None:
    """The kind of secret a string looks like, or None."""
    marker = REDACTED.search(value)
    if marker:
        return marker.group(1)
    for kind, pattern in VALUE_PATTERNS:
        if pattern.search(value):
            return kind
    return None


def scan(config: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield (location, kind) for secret-looking values in nested dicts/lists; never the value itself."""
    if isinstance(config, dict):
        for key, value in config.items():
            where = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, str) and _secret_named(str(key), value):
                yield where, "secret_named_key"
            elif isinstance(value, (dict, list)):
                yield from scan(value, where)
            elif isinstance(value, str) and (kind := value_kind(value)):
                yield where, kind
    elif isinstance(config, list):
        for i, value in enumerate(config):
            yield from scan(value, f"{prefix}[{i}]")
    elif isinstance(config, str) and (kind := value_kind(config)):
        yield prefix, kind


def _secret_named(key: str, value: str) -> bool:
    return bool(value.strip() and SECRET_KEY.search(key) and not NOT_SECRET_KEY.search(key) and not is_reference(value))


def redact_config(config: Any, key: str = "") -> Any:
    """`config` with every value that `scan` reports replaced by a marker naming its kind; `scan` reports the
    same places and kinds on the result."""
    if isinstance(config, dict):
        return {k: redact_config(v, str(k)) for k, v in config.items()}
    if isinstance(config, list):
        return [redact_config(v) for v in config]
    if isinstance(config, str):
        if _secret_named(key, config):
            return "[redacted:secret_named_key]"
        kind = value_kind(config)
        if kind:
            return f"[redacted:{kind}]"
    return config


def redact_url(url: str) -> str:
    """A URL without a secret-looking part: its safe form followed by the marker, else unchanged."""
    kind = value_kind(url)
    if not kind or REDACTED.search(url):
        return url
    return f"{safe_url(url)}#[redacted:{kind}]"


def safe_url(url: str) -> str:
    """A URL fit for a report: no userinfo, no query, and no path when the URL itself looks like a secret."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "(unparseable URL)"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = "/…" if value_kind(url) else parts.path
    return f"{parts.scheme}://{host}{path}" if parts.scheme else path
