"""One error tree for govern.

Errors are small classes that carry a stable `code`, an HTTP `status` and a human `title` as data
(the shape authlib uses for OAuth errors). The message given to an error must never contain a secret
value: callers describe what went wrong, not what the value was. `to_problem` renders RFC 9457
problem details; it never includes a stack trace.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any


class GovernError(Exception):
    code = "internal_error"
    status = 500
    title = "Internal error"
    # Seconds a client should wait before retrying a 503 (RFC 9110 sections 10.2.3 and 15.6.4). Every 503
    # carries it: `headers` adds it unless the error names its own wait.
    retry_after = 5

    def __init__(self, detail: str | None = None, *, extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        self.detail = detail or self.title
        self.extra = dict(extra or {})
        self.headers = headers or {}
        super().__init__(self.detail)

    @property
    def headers(self) -> dict[str, str]:
        if self.status == 503 and not any(name.lower() == "retry-after" for name in self._headers):
            return {**self._headers, "Retry-After": str(self.retry_after)}
        return self._headers

    @headers.setter
    def headers(self, value: dict[str, str]) -> None:
        self._headers = dict(value)

    def to_problem(self, instance: str | None = None, correlation_id: str | None = None) -> dict[str, Any]:
        """RFC 9457 problem details; `type` is a stable URN built from the code."""
        body: dict[str, Any] = {
            "type": f"urn:govern:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if correlation_id:
            body["correlation_id"] = correlation_id
        body.update(self.extra)
        return body


class ConfigurationError(GovernError):
    code = "configuration_error"
    status = 500
    title = "govern is not configured safely"


class ValidationFailed(GovernError):
    """Bad input. `errors` lists every problem found, each with a location."""

    code = "validation_failed"
    status = 422
    title = "The input is not valid"

    def __init__(self, errors: list[dict[str, Any]] | str, **kw):
        if isinstance(errors, str):
            errors = [{"location": "", "message": errors}]
        self.errors = errors
        detail = kw.pop("detail", None) or "; ".join(
            f"{e['location']}: {e['message']}" if e.get("location") else e["message"] for e in errors
        )
        super().__init__(detail, extra={"errors": errors}, **kw)


class BadRequest(GovernError):
    code = "bad_request"
    status = 400
    title = "The request is malformed"


class NotFound(GovernError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(GovernError):
    code = "conflict"
    status = 409
    title = "Conflict"


class Unauthorized(GovernError):
    code = "unauthorized"
    status = 401
    title = "Authentication is required"

    def __init__(self, detail: str | None = None, **kw):
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="govern"'})
        super().__init__(detail, **kw)


class Forbidden(GovernError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class AccessDenied(Forbidden):
    """A policy decision denied the request. `rule` names the deciding rule."""

    code = "access_denied"
    title = "Access denied by policy"

    def __init__(self, detail: str, rule: str, **kw):
        self.rule = rule
        super().__init__(detail, extra={"rule": rule, **kw.pop("extra", {})}, **kw)


class ConditionNotMet(AccessDenied):
    """A permission set's access condition does not hold (its time window, request rate or source range): `rule`
    names it, e.g. `condition:time_window` (docs/access-conditions.md)."""

    code = "condition_not_met"
    title = "Access condition not met"


def access_denied(detail: str, rule: str, **kw) -> AccessDenied:
    """AccessDenied for `rule`, or ConditionNotMet when the rule is an access condition."""
    return (ConditionNotMet if rule.startswith("condition:") else AccessDenied)(detail, rule=rule, **kw)


class RateLimited(GovernError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class DatabaseUnavailable(GovernError):
    """govern's own database refused or dropped the work: it is down, out of connections, locked past the busy
    timeout, or a transaction lost a deadlock. Nothing was decided on a half-read state; the client retries."""

    code = "database_unavailable"
    status = 503
    title = "govern's database cannot be reached"

    def __init__(self, detail: str | None = None, *, reason: str = "", **kw):
        self.reason = reason  # the driver's first line, for the server log only (never in the answer)
        super().__init__(detail, **kw)


class SecretStoreUnavailable(GovernError):
    code = "secret_store_unavailable"
    status = 503
    title = "The secret store cannot be reached"

    def __init__(self, detail: str | None = None, retry_after: int = 5, **kw):
        kw.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(detail, **kw)


class UpstreamUnavailable(GovernError):
    code = "upstream_unavailable"
    status = 503
    title = "The upstream system is unavailable"


class UpstreamError(GovernError):
    code = "upstream_error"
    status = 502
    title = "The upstream system answered with an error"


class SecretNotFound(NotFound):
    code = "secret_not_found"
    title = "No secret is stored there"


class SecretConflict(Conflict):
    code = "secret_version_conflict"
    title = "The secret changed since it was read (check-and-set failed)"


# --- bounded input (issue #14): refusals of hostile or oversized input, each with its own stable code ---

class InvalidParameter(BadRequest):
    """A query or path parameter that is not what the API accepts (e.g. an integer out of range, or written
    with digits other than ASCII 0-9). `errors` lists each parameter with its location."""

    code = "invalid_parameter"
    title = "A parameter is not valid"

    def __init__(self, errors: list[dict[str, Any]], **kw):
        self.errors = errors
        super().__init__("; ".join(f"{e['location']}: {e['message']}" for e in errors), extra={"errors": errors},
                         **kw)


class JsonTooDeep(BadRequest):
    code = "json_too_deep"
    title = "The JSON body is nested too deeply"


class DocumentTooLarge(GovernError):
    code = "document_too_large"
    status = 413
    title = "The document is too large"


class DocumentTooComplex(GovernError):
    """A YAML document whose aliases, nodes or nesting exceed the loader's limits (e.g. "billion laughs")."""

    code = "document_too_complex"
    status = 422
    title = "The document is too complex"


class MethodNotAllowed(GovernError):
    """RFC 9110 section 15.5.6: the answer carries `Allow` with the methods the resource supports."""

    code = "method_not_allowed"
    status = 405
    title = "Method Not Allowed"

    def __init__(self, detail: str | None = None, *, allow: Collection[str], **kw):
        kw.setdefault("headers", {"Allow": ", ".join(sorted(allow))})
        super().__init__(detail, **kw)
