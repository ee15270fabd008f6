"""create_app(): the Flask application factory, in steps. Nothing is created at import time."""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface

from govern.config import Settings, instance_secret_key, load_settings
from govern.logs import CORRELATION_HEADER, accept_correlation_id, bind_correlation_id, configure_logging

log = logging.getLogger("govern.http")


def create_app(test_config: Mapping[str, Any] | None = None, *, settings: Settings | None = None, services=None) -> Flask:
    settings = settings or (services.settings if services else load_settings())
    configure_logging(settings.log_level)
    if services is None:
        from govern.bootstrap import build_services

        services = build_services(settings)

    app = Flask("govern", instance_path=str(settings.home.resolve()), instance_relative_config=True)
    _configure_flask(app, settings, test_config)
    app.extensions["govern"] = services
    _install_correlation(app)

    from govern.api.problems import register_error_handlers

    register_error_handlers(app)
    _register_blueprints(app)
    return app


def _configure_flask(app: Flask, settings: Settings, test_config: Mapping[str, Any] | None) -> None:
    app.config.update(
        SECRET_KEY=instance_secret_key(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.production,
        SESSION_COOKIE_NAME="govern_session",
        PERMANENT_SESSION_LIFETIME=settings.session_lifetime_seconds,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.session_interface = _SessionInterface()


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer built once per key list rather than on
    every request (every API call opens the session, even without a cookie)."""

    _cached: tuple[tuple, Any] = ((), None)

    def get_signing_serializer(self, app: Flask):
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached_keys, serializer = self._cached
        if cached_keys != keys:
            serializer = super().get_signing_serializer(app)
            self._cached = (keys, serializer)
        return serializer


def _install_correlation(app: Flask) -> None:
    @app.before_request
    def _bind():
        g.correlation_id = accept_correlation_id(request.headers.get(CORRELATION_HEADER))
        g.correlation_token = bind_correlation_id(g.correlation_id)
        g.started = time.perf_counter()

    @app.after_request
    def _echo(response):
        cid = getattr(g, "correlation_id", None)
        if cid:
            response.headers[CORRELATION_HEADER] = cid
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        if request.path not in ("/healthz", "/readyz", "/metrics"):
            log.info("request", extra={
                "method": request.method, "path": request.path, "status": response.status_code,
                "duration_ms": round((time.perf_counter() - getattr(g, "started", time.perf_counter())) * 1000, 2),
                **g.get("log_fields", {}),  # operation, target/source system, outcome (govern.ops.observe)
            })
        return response


def _register_blueprints(app: Flask) -> None:
    from govern.api import (breakers, broker, connect, findings, health, landscape, metrics, oauth, openapi,
                            proxy, rotations, secrets as secrets_api)

    for module in (health, metrics, oauth, broker, openapi, secrets_api, proxy, breakers, landscape, findings,
                   rotations, connect):
        app.register_blueprint(module.bp)
    from govern.admin import init_admin

    init_admin(app)  # the web console at /admin
