"""Header allowlists, both ways. Anything not listed is dropped: the caller's Authorization and
Cookie never reach the upstream, and the upstream's Set-Cookie never reaches the caller. Pure."""
from __future__ import annotations

from collections.abc import Mapping

REQUEST_HEADERS = {
    "accept", "accept-language", "content-type", "content-language", "idempotency-key", "if-match",
    "if-none-match", "if-modified-since", "if-unmodified-since", "prefer", "sforce-call-options",
    "sforce-query-options", "sforce-auto-assign", "x-request-id",
}
RESPONSE_HEADERS = {
    "content-type", "content-language", "etag", "last-modified", "retry-after", "cache-control", "expires",
    "vary", "sforce-limit-info", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "link",
    "deprecation", "sunset", "warning",
}


# The same allowlist under the WSGI environ's names: HTTP_ACCEPT_LANGUAGE -> Accept-Language.
_ENVIRON_NAMES = {"HTTP_" + name.upper().replace("-", "_"): "-".join(part.capitalize() for part in name.split("-"))
                  for name in REQUEST_HEADERS}
_ENVIRON_NAMES.update({"CONTENT_TYPE": "Content-Type"})  # WSGI keeps Content-Type without the HTTP_ prefix
_ENVIRON_NAMES.pop("HTTP_CONTENT_TYPE")


def forwardable_environ_headers(environ: Mapping[str, object]) -> dict[str, str]:
    """The allowlisted request headers, read straight from the WSGI environ (the proxy's hot path)."""
    return {header: value for key, header in _ENVIRON_NAMES.items()
            if isinstance(value := environ.get(key), str) and value}


def returnable_response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() in RESPONSE_HEADERS}
