"""A principal that needs reconnecting: the upstream refused its stored refresh token (RFC 6749 section
5.2 `invalid_grant`: revoked, expired, or rotated away when an answer was lost and the upstream has no
grace period).

Nothing govern can do without a person brings such a principal back, and every further refresh with the
dead token is an upstream call that only adds to the upstream's failed-login count. So govern marks it
(`Principal.needs_reconnect_at`, persisted, so every process and every restart sees it), sends one alert,
and from then on answers `principal_needs_reconnect` (409) without calling the upstream, until the
principal is reconnected (the connect flow, or `govern secrets put CREDENTIAL --principal P --field
refresh_token`), which clears the mark and sends one "recovered" alert.

Both changes are conditional UPDATEs, so of many processes that see the same refusal (or the same
reconnect) exactly one wins and sends the alert.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from collections.abc import Callable

from govern.ports import UpstreamPrincipals

log = logging.getLogger("govern.broker.upstream")
NEEDS_RECONNECT_EVENT = "alert.principal_needs_reconnect"
RECONNECTED_EVENT = "alert.principal_reconnected"


def needs_reconnect_since(principals: UpstreamPrincipals, principal_id: int | None) -> dt.datetime | None:
    """When the principal was marked, or None (read fresh: another process may have marked it)."""
    if principal_id is None:
        return None
    return principals.needs_reconnect_since(principal_id)


def mark_needs_reconnect(principals: UpstreamPrincipals, notify: Callable[[str, dict[str, Any]], None],
                         now: dt.datetime, *, principal_id: int, credential: str, principal: str,
                         in_doubt: list[str]) -> bool:
    """Mark the principal; True (and one alert) for the process that marked it first."""
    marked = principals.mark_needs_reconnect(principal_id, now)
    if marked:
        log.error("upstream refused the stored refresh token: the principal must be reconnected", extra={
            "alert": "principal_needs_reconnect", "credential": credential, "principal": principal,
            "in_doubt_attempts": in_doubt})
        notify(NEEDS_RECONNECT_EVENT, {
            "credential": credential, "principal": principal, "since": now.isoformat(),
            "in_doubt_attempts": in_doubt, "runbook": "docs/runbooks/refresh-token-lockout.md"})
    return marked


def clear_needs_reconnect(principals: UpstreamPrincipals, notify: Callable[[str, dict[str, Any]], None] | None,
                          now: dt.datetime, *, credential: str, principal: str) -> bool:
    """The principal has a new refresh token: clear the mark; True (and one alert) if it was set."""
    cleared, since = principals.clear_needs_reconnect(credential, principal)
    if cleared:
        log.info("principal reconnected", extra={"credential": credential, "principal": principal})
        if notify is not None:
            notify(RECONNECTED_EVENT, {"credential": credential, "principal": principal,
                                       "since": since.isoformat() if since else None, "at": now.isoformat()})
    return cleared


def safe_notifier(get_notifier: Callable[[], Any]) -> Callable[[str, dict[str, Any]], None]:
    """An alert must never break the request that raised it (govern.notify's rule)."""

    def notify(event: str, payload: dict[str, Any]) -> None:
        try:
            notifier = get_notifier()
            if notifier is not None:
                notifier.notify(event, payload)
        except Exception as exc:  # noqa: BLE001
            log.warning("notifier failed", extra={"event": event, "exc_type": type(exc).__name__})

    return notify
