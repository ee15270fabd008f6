"""Daily API budget and rate per minute per system (seed sections 5 and 18: the contract's limits).

Counted in the shared cache (Redis INCR, expiring at the end of the UTC day), so every govern process
draws from one counter. At 80% one alert is sent per system and day (a cache `add` elects the
sender); past 100% calls are refused unless the decision allows overdraft.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading

from govern.broker.proxy.errors import BudgetExhausted, SystemRateLimited
from govern.ports import Cache, Clock, Notifier

log = logging.getLogger("govern.proxy.budget")
ALERT_RATIO = 0.8


def seconds_to_end_of_day(now: dt.datetime) -> int:
    now = now.astimezone(dt.UTC)
    end = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    return max(1, int((end - now).total_seconds() + 0.999))


class DailyBudget:
    def __init__(self, cache: Cache, clock: Clock, notifier: Notifier | None = None, *, background: bool = True):
        self.cache = cache
        self.clock = clock
        self.notifier = notifier
        self.background = background

    def _key(self, system: str, now: dt.datetime) -> str:
        return f"proxy:budget:{system}:{now.astimezone(dt.UTC).date().isoformat()}"

    def used(self, system: str) -> int:
        return int(self.cache.get(self._key(system, self.clock.now())) or 0)

    def consume(self, system: str, budget: int | None, *, overdraft: bool) -> int:
        """Count one call; raise BudgetExhausted past the budget (the refused call is not counted)."""
        if not budget:
            return 0
        now = self.clock.now()
        ttl = seconds_to_end_of_day(now)
        key = self._key(system, now)
        count = self.cache.incr(key, 1, ttl=ttl)
        if count > budget and not overdraft:
            self.cache.incr(key, -1, ttl=ttl)
            raise BudgetExhausted(system, budget, ttl)
        if count >= budget * ALERT_RATIO:
            day = now.astimezone(dt.UTC).date().isoformat()
            if self.cache.add(f"proxy:budget-alert:{system}:{day}", b"1", ttl=ttl + 60):
                self._alert(system, budget, count, day)
        return count

    def _alert(self, system: str, budget: int, count: int, day: str) -> None:
        payload = {"system": system, "budget": budget, "used": count, "day": day, "threshold": ALERT_RATIO}
        log.warning("api budget threshold reached", extra=payload)
        if self.notifier is None:
            return

        def send():
            try:
                self.notifier.notify("api_budget_threshold", payload)
            except Exception as exc:  # an alert failure must not fail the call it rides on
                log.error("api budget alert failed", extra={"system": system, "exc_type": type(exc).__name__})

        if self.background:
            threading.Thread(target=send, name="govern-budget-alert", daemon=True).start()
        else:
            send()


class MinuteRate:
    """The system contract's `rate_limit_per_minute`: govern's calls to the system in one minute of its clock
    (fixed windows, 10:00:00-10:00:59, as the access conditions count), across every govern process (the shared
    cache). Every upstream call counts: the first attempt, each retry and each followed redirect. Past the rate
    the call is refused with 429 `system_rate_limited` and a Retry-After to the next minute, before it reaches
    the upstream (the upstream's own 429 is the backstop, UpstreamRateLimited). One shared-cache round trip per
    call, and none for a system without a rate."""

    def __init__(self, cache: Cache, clock: Clock):
        self.cache = cache
        self.clock = clock

    def consume(self, system: str, per_minute: int | None) -> str | None:
        """Count one call; raise SystemRateLimited past the rate. Returns the minute's counter (None without a
        rate), for `give_back` when the call is refused for another reason after all (its daily budget)."""
        if not per_minute:
            return None
        now = self.clock.now().timestamp()
        minute = int(now // 60)
        key = f"proxy:rate:{system}:{minute}"
        count = self.cache.incr_each([key], ttl=120)[0]
        if count > per_minute:
            raise SystemRateLimited(system, per_minute, max(1, int((minute + 1) * 60 - now + 0.999)))
        return key

    def give_back(self, counted: str | None) -> None:
        """Uncount a call that `consume` let through but that was not made."""
        if counted is not None:
            self.cache.incr(counted, -1, ttl=120)
