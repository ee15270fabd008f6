"""Header allowlists, both ways. Anything not listed is dropped: the caller's Authorization and
Cookie never reach the upstream, and the upstream's Set-Cookie never reaches the caller. Pure."""
from __future__ import annotations

from typing import Iterable, Mapping

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


def forwardable_request_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name: value for name, value in headers if name.lower() in REQUEST_HEADERS}


def returnable_response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() in RESPONSE_HEADERS}
