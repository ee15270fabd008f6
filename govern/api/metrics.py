"""/metrics in the Prometheus text format.

It names systems and credentials with allow/deny counts, so it is not public: when GOVERN_METRICS_TOKEN is
set (required in production) a scrape must send `Authorization: Bearer <token>` (Prometheus:
`authorization: {credentials_file: ...}`). GOVERN_METRICS_ENABLED=false turns the endpoint off (404) for
instances whose metrics are collected another way. docs/operations.md "Metrics".
"""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST

from govern.errors import NotFound, Unauthorized

bp = Blueprint("metrics", __name__)


class MetricsUnauthorized(Unauthorized):
    code = "metrics_unauthorized"
    title = "The metrics token is missing or wrong"


@bp.get("/metrics")
def metrics():
    services = current_app.extensions["govern"]
    settings = services.settings
    if not settings.metrics_enabled:
        raise NotFound("metrics are not served here (GOVERN_METRICS_ENABLED=false)")
    if settings.metrics_token:
        scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(),
                                                                  settings.metrics_token.encode()):
            raise MetricsUnauthorized("/metrics needs Authorization: Bearer <GOVERN_METRICS_TOKEN>",
                                      headers={"WWW-Authenticate": 'Bearer realm="govern-metrics"'})
    return Response(services.metrics.render(), mimetype=CONTENT_TYPE_LATEST)
