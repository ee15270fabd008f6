"""The token endpoint transport, behind a small adapter so unit tests can fake it (the hvac habit).

`RequestsTokenHttp` posts a form with requests; `parse_token_response` maps the answer into either the
token fields or an error of govern's tree (RFC 6749 section 5.1 success, section 5.2 errors).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from govern.broker.upstream.errors import UpstreamInvalidClient, UpstreamInvalidGrant
from govern.errors import RateLimited, UpstreamError, UpstreamUnavailable

log = logging.getLogger("govern.broker.upstream")


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # the decoded JSON object, or None


class TokenHttp(Protocol):
    def post_form(self, url: str, data: dict[str, str], *, basic_auth: tuple[str, str] | None,
                  timeout: float) -> HttpAnswer:
        """POST application/x-www-form-urlencoded; raise UpstreamUnavailable on timeouts and connection errors."""
        ...


class RequestsTokenHttp:
    """One requests.Session per thread (Sessions are not thread-safe), keeping connections alive."""

    def __init__(self):
        self._local = threading.local()

    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.trust_env = False
        return s

    def post_form(self, url, data, *, basic_auth, timeout):
        try:
            resp = self._session().post(url, data=data, auth=basic_auth, timeout=timeout,
                                        headers={"Accept": "application/json"}, allow_redirects=False)
        except requests.Timeout as exc:
            _log_cause("did not answer in time", url, exc)
            raise UpstreamUnavailable("the upstream token endpoint did not answer in time") from None
        except requests.RequestException as exc:
            # The connection failed or dropped: the request may or may not have been processed.
            _log_cause("cannot be reached", url, exc)
            raise UpstreamUnavailable("the upstream token endpoint cannot be reached") from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        return HttpAnswer(resp.status_code, dict(resp.headers), body)


def parse_token_response(answer: HttpAnswer) -> dict[str, Any]:
    """The token fields of a 200 answer, or the error of govern's tree for anything else."""
    body = answer.body if isinstance(answer.body, dict) else {}
    if answer.status == 429:
        retry_after = _retry_after(answer.headers)
        raise RateLimited("the upstream token endpoint is rate limiting govern",
                          headers={"Retry-After": str(retry_after)}, extra={"retry_after": retry_after})
    if answer.status >= 500:
        raise UpstreamUnavailable(f"the upstream token endpoint answered {answer.status}")
    error = body.get("error")
    if answer.status == 200 and not error:
        if not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise UpstreamError("the upstream answered without an access token")
        return body
    if error == "invalid_grant":
        raise UpstreamInvalidGrant("the upstream refused the grant (invalid_grant)")
    if error == "invalid_client" or answer.status == 401:
        raise UpstreamInvalidClient("the upstream refused govern's client authentication (invalid_client)")
    code = error if isinstance(error, str) and error.isidentifier() else "unknown"
    raise UpstreamError(f"the upstream token endpoint answered {answer.status} ({code})")


def _retry_after(headers: dict[str, str]) -> int:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0, int(value))
            except ValueError:
                return 30  # an HTTP date: do not parse it, be conservative
    return 30


def _log_cause(what: str, url: str, exc: BaseException) -> None:
    """The operator's half of an upstream_unavailable: the cause (DNS, refused, TLS, timeout), never the form
    (it carries the client secret or the refresh token); requests' messages name the host and the reason."""
    origin = url.split("?", 1)[0]
    log.warning(f"upstream token endpoint {what}", extra={
        "url": origin, "cause": type(exc).__name__, "cause_detail": str(exc)[:500]})
