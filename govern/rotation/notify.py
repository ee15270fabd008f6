"""Rotation alerts as a signed JSON webhook (seed practice 17: alert before business impact).

POST GOVERN_ALERT_WEBHOOK_URL with `X-Govern-Timestamp: <unix seconds>` and
`X-Govern-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, the scheme Stripe and
GitHub use, so a receiver can reject forged and replayed alerts. Delivery failures are logged and never
fail a rotation. Payloads carry names, states and redacted errors, never a secret value.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any, Callable

log = logging.getLogger("govern.rotation.notify")

EVENTS = ("rotation.failed", "rotation.parked", "rotation.recovered", "rotation.reminder")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


class WebhookNotifier:
    def __init__(self, url: str, secret: str, *, timeout: float = 5.0, now: Callable[[], float] = time.time,
                 post: Callable[..., Any] | None = None):
        self.url = url
        self._secret = secret
        self.timeout = timeout
        self._now = now
        self._post = post

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        body = json.dumps({"event": event, **payload}, sort_keys=True, default=str).encode("utf-8")
        ts = str(int(self._now()))
        headers = {"Content-Type": "application/json", "X-Govern-Timestamp": ts,
                   "X-Govern-Signature": sign(self._secret, ts, body), "X-Govern-Event": event}
        try:
            post = self._post
            if post is None:
                import requests

                post = requests.post
            resp = post(self.url, data=body, headers=headers, timeout=self.timeout)
            status = getattr(resp, "status_code", 200)
            if status >= 300:
                log.warning("alert webhook answered %s", status, extra={"event": event})
        except Exception as exc:  # noqa: BLE001 - an alert must never break a rotation
            log.warning("alert webhook failed: %s", type(exc).__name__, extra={"event": event})


class LogNotifier:
    """Used when no webhook is configured: the alert is still visible in the JSON logs."""

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        log.warning("rotation alert %s", event, extra={"alert": payload})


def build_notifier(settings) -> WebhookNotifier | LogNotifier:
    if settings.alert_webhook_url and settings.alert_webhook_secret:
        return WebhookNotifier(settings.alert_webhook_url, settings.alert_webhook_secret)
    return LogNotifier()
