"""Alert webhooks signed with HMAC-SHA256 over "<timestamp>.<body>"."""
from __future__ import annotations

import hashlib
import hmac
import json

from govern.notify import LogNotifier, WebhookNotifier, build_notifier
from tests.fakes.resource_server import ResourceServer


def test_webhook_posts_signed_json():
    server = ResourceServer().start()
    try:
        WebhookNotifier(server.url + "/hook", "hook-secret").notify("api_budget_threshold", {"system": "erp"})
        got = server.last()
    finally:
        server.stop()
    body = json.loads(got.body)
    assert body["event"] == "api_budget_threshold" and body["payload"] == {"system": "erp"}
    ts = got.headers["X-Govern-Timestamp"]
    expected = hmac.new(b"hook-secret", ts.encode() + b"." + got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Govern-Signature"] == f"sha256={expected}"


def test_without_a_webhook_alerts_go_to_the_log(settings):
    assert isinstance(build_notifier(settings), LogNotifier)
    assert isinstance(build_notifier(settings.with_overrides(alert_webhook_url="http://x")), LogNotifier)
    assert isinstance(build_notifier(settings.with_overrides(alert_webhook_url="http://x", alert_webhook_secret="s")),
                      WebhookNotifier)
