"""Retry policy: exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
Jitter"), only for idempotent methods (RFC 9110 section 9.2.2) or requests carrying an Idempotency-Key;
429 honours Retry-After (RFC 9110 section 10.2.3) up to a bound. The policy itself is
govern.domain.resilience.RetryPolicy (governance.yaml's `retry:`). Pure: sleep and random are injected."""
from __future__ import annotations

import datetime as dt
from email.utils import parsedate_to_datetime

from govern.broker.proxy.resource import IDEMPOTENT_METHODS
from govern.domain.resilience import RetryPolicy  # noqa: F401 - the named credential's `retry:`, one shape

RETRYABLE_STATUS = {502, 503, 504}


def may_retry(method: str, idempotency_key: str | None) -> bool:
    return method.upper() in IDEMPOTENT_METHODS or bool(idempotency_key)


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())
