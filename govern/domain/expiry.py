"""Expiry forecasting (issue #21, docs/expiry.md): what expires, when, and how many days are left.

Pure functions over plain values; the store reads the facts (govern.store.expiry) and the worker, `/metrics`, the
console and `govern expiry` all use the same `forecast`.

An item is one thing that stops working on a date:
- `client_secret`: an upstream client secret the provider caps (declared `client_secret_expires:`);
- `refresh_token`: a stored refresh token with an absolute lifetime from its issue (`refresh_token_lifetime:`)
  and/or an idle lifetime from its last use (`refresh_token_idle:`); it expires at the earlier of the two;
- `certificate`: a certificate govern holds (its `notAfter`).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

KINDS = ("client_secret", "refresh_token", "certificate")
DEFAULT_LEAD_DAYS = 30
HORIZONS = (30, 60, 90)


@dataclass(frozen=True)
class ExpiryItem:
    kind: str  # one of KINDS
    credential: str  # the credential (or the imported org's connected app) it belongs to
    subject: str  # what expires, e.g. "client_secret" or "principal svc/refresh_token"
    expires_at: dt.datetime
    source: str  # "declared", "learned" (from what govern holds)
    rotation: bool = False  # the credential has a rotation schedule

    @property
    def key(self) -> str:
        """A stable identity: one alert per item, and the `/metrics` label."""
        return f"{self.kind}:{self.credential}:{self.subject}"


@dataclass(frozen=True)
class Forecast:
    item: ExpiryItem
    days_left: float  # negative once expired

    @property
    def expired(self) -> bool:
        return self.days_left <= 0

    def as_dict(self) -> dict:
        return {"key": self.item.key, "kind": self.item.kind, "credential": self.item.credential,
                "subject": self.item.subject, "expires_at": self.item.expires_at.isoformat(),
                "days_left": round(self.days_left, 2), "source": self.item.source,
                "rotation": self.item.rotation, "expired": self.expired}


def refresh_token_expiry(issued_at: dt.datetime, last_used_at: dt.datetime | None, *,
                         lifetime_seconds: float | None, idle_seconds: float | None) -> dt.datetime | None:
    """When a refresh token stops working: issue + absolute lifetime, or last use + idle lifetime, the earlier.
    None when neither lifetime is declared."""
    candidates = []
    if lifetime_seconds:
        candidates.append(issued_at + dt.timedelta(seconds=lifetime_seconds))
    if idle_seconds:
        candidates.append(max(issued_at, last_used_at or issued_at) + dt.timedelta(seconds=idle_seconds))
    return min(candidates) if candidates else None


def date_end(day: dt.date) -> dt.datetime:
    """A declared expiry date means the secret works through that day (UTC): it expires at the next midnight."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def forecast(items: list[ExpiryItem], now: dt.datetime, within_days: float | None = None) -> list[Forecast]:
    """Items with their days to expiry, soonest first; with `within_days`, only those expiring within it
    (expired ones included)."""
    out = []
    for item in items:
        days = (item.expires_at - now).total_seconds() / 86400
        if within_days is None or days <= within_days:
            out.append(Forecast(item, days))
    return sorted(out, key=lambda f: (f.days_left, f.item.key))


def due_for_alert(forecasts: list[Forecast], lead_days: float) -> list[Forecast]:
    """The items to alert on: those expiring within `lead_days` (or already expired)."""
    return [f for f in forecasts if f.days_left <= lead_days]


def buckets(forecasts: list[Forecast], horizons: tuple[int, ...] = HORIZONS) -> dict[int, list[Forecast]]:
    """The dashboard's "Expiring in 30/60/90 days": each item in the first horizon it falls in (expired in the
    first)."""
    out: dict[int, list[Forecast]] = {h: [] for h in horizons}
    for f in forecasts:
        for h in horizons:
            if f.days_left <= h:
                out[h].append(f)
                break
    return out


def whole_days(days_left: float) -> int:
    """Days left as people count them: 0.4 days is "0 days", -0.2 is expired (-1)."""
    return math.floor(days_left)
