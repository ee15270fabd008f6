"""A named credential's resilience settings (seed practice 2, "design for failure"), one shape everywhere.

`RetryPolicy` and `BreakerPolicy` are what governance.yaml's `retry:` and `circuit_breaker:` say, what the
named_credential row stores (as JSON with the same keys, durations in seconds) and what the proxy reads.
So a key means one thing from the YAML to the call. Stored JSON is read with `parse_stored`: a row that does
not parse is an error when it is loaded, never a silent default.

Retries: exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
Breaker: Nygard, "Release It!"; Fowler, "CircuitBreaker".
"""
from __future__ import annotations

from typing import Annotated, Any, Callable, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from govern.config_as_code.units import parse_duration
from govern.errors import ConfigurationError

Seconds = Annotated[float, BeforeValidator(parse_duration)]


class Value(BaseModel):
    """A frozen value that refuses unknown keys: a misspelt key is an error, not a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    def stored(self) -> dict[str, Any]:
        """The JSON stored for it: only the keys that were set, so defaults can change without a migration."""
        return self.model_dump(mode="json", exclude_unset=True)


class RetryPolicy(Value):
    """`retry:` of a named credential. Only idempotent methods (RFC 9110 section 9.2.2) and calls with an
    Idempotency-Key are retried; an upstream 429 is waited out up to `max_retry_after` (RFC 9110 section 10.2.3)."""

    attempts: Annotated[int, Field(ge=1, le=20)] = 3  # every upstream attempt, the first one included
    backoff: Seconds = 0.2  # the base of the exponential backoff
    max_backoff: Seconds = 5.0  # its cap
    max_retry_after: Seconds = 10.0  # longer waits go back to the caller as 429 + Retry-After
    redirects: Annotated[int, Field(ge=0, le=10)] = 0  # same-origin redirects under the base URL that are followed

    def delay(self, attempt: int, rand: Callable[[], float]) -> float:
        """Full jitter: a uniform wait in [0, min(max_backoff, backoff * 2**attempt)] (attempt counts from 0)."""
        return rand() * min(self.max_backoff, self.backoff * (2 ** attempt))


class BreakerPolicy(Value):
    """`circuit_breaker:` of a named credential: opens after `failures` failures within `window`, lets one
    probe through after `reset`."""

    failures: Annotated[int, Field(ge=1, le=10_000)] = 5
    reset: Seconds = 30.0
    window: Seconds = 60.0


V = TypeVar("V", bound=BaseModel)
_ADAPTERS: dict[Any, TypeAdapter] = {}


def parse_stored(kind: Any, raw: Any, where: str) -> Any:
    """Read stored JSON as the value object `kind` (a class or a type such as list[MaintenanceWindow]).
    None (a NULL column) is the empty value; anything that does not parse raises ConfigurationError naming
    `where`, so a bad row fails loudly where it is loaded."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    if raw is None:
        raw = [] if getattr(kind, "__origin__", None) in (list, tuple) else {}
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(value)'}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"{where} holds stored settings govern cannot read ({problems}); "
                                 "apply the governance file again") from None
