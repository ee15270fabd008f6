"""The proxy's problems: each a stable code (RFC 9457 problem+json via govern.errors)."""
from __future__ import annotations

from govern.errors import (BadRequest, Conflict, Forbidden, GovernError, NotFound, UpstreamUnavailable,
                           ValidationFailed)


class PathNotAllowed(BadRequest):
    """The path would leave the named credential's base URL (SSRF), or is malformed."""

    code = "path_not_allowed"
    title = "The path is not allowed"


class NamedCredentialNotFound(NotFound):
    code = "named_credential_not_found"
    title = "No named credential has that name"


class NamedCredentialForbids(Forbidden):
    """The named credential itself does not allow this method or path (before any permission set)."""

    code = "named_credential_forbids"
    title = "The named credential does not allow this call"


class PayloadTooLarge(GovernError):
    code = "payload_too_large"
    status = 413
    title = "The request body is too large"


class CircuitOpen(GovernError):
    code = "circuit_open"
    status = 503
    title = "The circuit to the upstream system is open"

    def __init__(self, system: str, retry_after: int):
        super().__init__(f"calls to {system} are suspended after repeated failures; retry later",
                         extra={"system": system}, headers={"Retry-After": str(max(1, retry_after))})


class BudgetExhausted(GovernError):
    code = "budget_exhausted"
    status = 429
    title = "The daily API budget of the system is exhausted"

    def __init__(self, system: str, budget: int, retry_after: int):
        super().__init__(f"the daily API budget of {system} ({budget} calls) is used up",
                         extra={"system": system, "budget": budget}, headers={"Retry-After": str(max(1, retry_after))})


class SystemRateLimited(GovernError):
    code = "system_rate_limited"
    status = 429
    title = "The system's rate per minute is used up"

    def __init__(self, system: str, per_minute: int, retry_after: int):
        super().__init__(f"the rate of {system} ({per_minute} calls per minute, its contract) is used up this minute",
                         extra={"system": system, "rate_limit_per_minute": per_minute},
                         headers={"Retry-After": str(max(1, retry_after))})


class MaintenanceWindow(GovernError):
    code = "maintenance_window"
    status = 503
    title = "The upstream system is in a maintenance window"

    def __init__(self, system: str, retry_after: int):
        super().__init__(f"{system} is in a maintenance window", extra={"system": system},
                         headers={"Retry-After": str(max(1, retry_after))})


class UpstreamRateLimited(GovernError):
    """The upstream answered 429 and asked for a wait longer than govern may hold the call."""

    code = "upstream_rate_limited"
    status = 429
    title = "The upstream system is rate limiting"

    def __init__(self, system: str, retry_after: int):
        super().__init__(f"{system} asked to retry later; nothing was processed upstream",
                         extra={"system": system}, headers={"Retry-After": str(max(1, retry_after))})


class UpstreamTimeout(GovernError):
    code = "upstream_timeout"
    status = 504
    title = "The upstream system did not answer in time"


class UpstreamUnreachable(UpstreamUnavailable):
    """govern.errors.UpstreamUnavailable (503 `upstream_unavailable`), with the Retry-After the proxy knows."""

    def __init__(self, detail: str, retry_after: int = 5):
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class UpstreamRedirectRefused(GovernError):
    code = "upstream_redirect_refused"
    status = 502
    title = "The upstream system redirected outside the named credential"


class UpstreamAnswerTooLarge(GovernError):
    """The upstream's answer, once its Content-Encoding is undone, exceeds the transport's limit (a gzip bomb)."""

    code = "upstream_answer_too_large"
    status = 502
    title = "The upstream system's answer is too large once decoded"


class UnsafeUpstreamRequest(GovernError):
    """A header (an injected credential, most likely) would split the request: nothing was sent."""

    code = "upstream_request_unsafe"
    status = 502
    title = "govern refused to send a request that could be split"


class DegradedMode(GovernError):
    """The secret store is down and there is no cached credential: fail at once, do not hang."""

    code = "degraded_credential_unavailable"
    status = 503
    title = "The credential cannot be read while the secret store is down"

    def __init__(self, detail: str, retry_after: int = 5):
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class CredentialMissing(GovernError):
    code = "credential_not_configured"
    status = 502
    title = "The credential for this call is not configured"


class IdempotencyInFlight(Conflict):
    code = "idempotency_key_in_flight"
    title = "A request with this Idempotency-Key is still in progress"


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    title = "The Idempotency-Key was used for a different request"

    def __init__(self):
        super().__init__([{"location": "header.Idempotency-Key",
                           "message": "this key was already used with a different method, path or body"}])


class BulkheadFull(GovernError):
    """Every slot for calls to this system is taken in this govern process (the bulkhead): a slow system
    must not hold every thread, so the call is refused after a short wait instead of queueing behind it."""

    code = "upstream_concurrency_limit"
    status = 503
    title = "Too many calls to the upstream system are in flight"

    def __init__(self, system: str, limit: int, retry_after: int = 1):
        super().__init__(f"{system} already has {limit} calls in flight from this govern process; retry shortly",
                         extra={"system": system, "limit": limit}, headers={"Retry-After": str(max(1, retry_after))})
