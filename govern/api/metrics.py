"""/metrics in the Prometheus text format."""
from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    services = current_app.extensions["govern"]
    return Response(services.metrics.render(), mimetype=CONTENT_TYPE_LATEST)
