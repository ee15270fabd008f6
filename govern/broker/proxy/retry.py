"""Retry policy: exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
Jitter"), only for idempotent methods (RFC 9110 section 9.2.2) or requests carrying an Idempotency-Key;
429 honours Retry-After (RFC 9110 section 10.2.3) up to a bound. Pure: sleep and random are injected."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable

from govern.broker.proxy.resource import IDEMPOTENT_METHODS

RETRYABLE_STATUS = {502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 10.0  # longer waits are handed back to the caller as 429 + Retry-After
    max_redirects: int = 0  # same-origin redirects under the base URL only

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> "RetryPolicy":
        cfg = cfg or {}
        return cls(
            max_attempts=max(1, int(cfg.get("max_attempts", cls.max_attempts))),
            base_delay=float(cfg.get("base_delay_seconds", cls.base_delay)),
            max_delay=float(cfg.get("max_delay_seconds", cls.max_delay)),
            max_retry_after=float(cfg.get("max_retry_after_seconds", cls.max_retry_after)),
            max_redirects=int(cfg.get("max_redirects", cls.max_redirects)),
        )

    def backoff(self, attempt: int, rand: Callable[[], float]) -> float:
        """Full jitter: a uniform wait in [0, min(cap, base * 2**attempt)] (attempt counts from 0)."""
        return rand() * min(self.max_delay, self.base_delay * (2 ** attempt))


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
