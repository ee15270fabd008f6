"""Alerts (seed practice 17): a webhook signed with HMAC-SHA256, or the log when no webhook is set.

The one notifier of govern (`services.notifier`): the proxy's API-budget alerts and the
rotation jobs' failed/parked/recovered/reminder events both go through it. Delivery failures are logged
and never raised: an alert must never break the work that raised it. Payloads carry names, states and
redacted errors, never a secret value.

The webhook body is JSON `{"event", "payload", "sent_at"}`. Receivers verify
`X-Govern-Signature: sha256=<hex HMAC-SHA256(secret, "<X-Govern-Timestamp>." + body)>` and reject
stale timestamps, so a captured alert cannot be replayed later (the scheme Stripe and GitHub use).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from typing import Any

import requests

from govern.ports import Clock, Notifier

log = logging.getLogger("govern.notify")
SIGNATURE_HEADER = "X-Govern-Signature"
TIMESTAMP_HEADER = "X-Govern-Timestamp"
EVENT_HEADER = "X-Govern-Event"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str | None) -> bool:
    """What a receiver checks (it should also refuse a stale timestamp)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


class LogNotifier:
    """The fallback: one warning line per alert."""

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        log.warning("alert", extra={"event": event, "payload": payload})


class WebhookNotifier:
    def __init__(self, url: str, secret: str, *, timeout: float = 5.0, clock=None, session=None):
        self.url = url
        self._secret = secret
        self.timeout = timeout
        self.clock = clock
        self.session = session or requests.Session()
        self.session.trust_env = False

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        now = self.clock.now() if self.clock else dt.datetime.now(dt.UTC)
        body = json.dumps({"event": event, "payload": payload, "sent_at": now.isoformat()}, default=str).encode()
        timestamp = str(int(now.timestamp()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign(self._secret, timestamp, body), EVENT_HEADER: event}
        try:
            response = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - the exception text may quote the request; an alert never breaks work
            log.error("alert webhook unreachable", extra={"event": event, "exc_type": type(exc).__name__})
            return
        if response.status_code >= 300:
            log.error("alert webhook refused", extra={"event": event, "status": response.status_code})


def build_notifier(settings, clock: Clock | None = None) -> Notifier:
    if settings.alert_webhook_url:
        if not settings.alert_webhook_secret:
            log.warning("GOVERN_ALERT_WEBHOOK_URL is set without GOVERN_ALERT_WEBHOOK_SECRET; alerts go to the log")
            return LogNotifier()
        return WebhookNotifier(settings.alert_webhook_url, settings.alert_webhook_secret, clock=clock)
    return LogNotifier()
