"""create_app(): the Flask application factory, in steps. Nothing is created at import time."""
from __future__ import annotations

import ipaddress
import time
from typing import Any
from collections.abc import Mapping

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface

from govern.admin import init_admin
from govern.api import (breakers, broker, connect, decisions, edge, findings, health, landscape, metrics, oauth,
                        openapi, proxy, rotations, secrets as secrets_api)
from govern.api.conventions import SECURITY_HEADERS, log_request
from govern.api.broker import TokenRouteEdge
from govern.api.oauth import TokenEdge
from govern.api.problems import register_error_handlers
from govern.api.proxy import ProxyEdge
from govern.bootstrap import build_services
from govern.config import Settings, instance_secret_key, load_settings
from govern.logs import CORRELATION_HEADER, accept_correlation_id, bind_correlation_id, configure_logging


def create_app(test_config: Mapping[str, Any] | None = None, *, settings: Settings | None = None, services=None) -> Flask:
    settings = settings or (services.settings if services else load_settings())
    configure_logging(settings.log_level)
    if services is None:
        services = build_services(settings)

    app = Flask("govern", instance_path=str(settings.home.resolve()), instance_relative_config=True)
    _configure_flask(app, settings, test_config)
    app.extensions["govern"] = services
    _install_correlation(app)

    register_error_handlers(app)
    edge.install(app)  # before the blueprints: their `<int:...>` rules use its converter
    _register_blueprints(app)
    # The callout proxy is served by its own WSGI edge in front of Flask (govern.api.proxy): the hot path.
    app.wsgi_app = ProxyEdge(app.wsgi_app, services, max_body=app.config["MAX_CONTENT_LENGTH"])
    # So is a JSON upstream-token request (govern.api.broker): the cache-hit path, near /healthz's cost.
    app.wsgi_app = TokenRouteEdge(app.wsgi_app, services, max_body=app.config["MAX_CONTENT_LENGTH"])
    # A guesser already refused at /oauth/token is answered before Flask (govern.api.oauth.TokenEdge).
    app.wsgi_app = TokenEdge(app.wsgi_app, services)
    app.wsgi_app = TrustedForwardedProto(app.wsgi_app, settings.trusted_proxy_networks)
    return app


class TrustedForwardedProto:
    """Behind a TLS-terminating proxy, X-Forwarded-Proto sets the request's scheme, but only when the socket
    peer is a trusted proxy (GOVERN_TRUSTED_PROXIES); from anyone else the header is dropped. The host is
    never taken from X-Forwarded-Host or Host for anything govern builds: GOVERN_PUBLIC_URL names it."""

    def __init__(self, wsgi_app, trusted):
        self.wsgi_app = wsgi_app
        self._trusted = tuple(trusted)

    def __call__(self, environ, start_response):
        proto = environ.pop("HTTP_X_FORWARDED_PROTO", None)
        if proto and self._trusted and _peer_trusted(environ.get("REMOTE_ADDR", ""), self._trusted):
            nearest = proto.split(",")[-1].strip().lower()  # the value the nearest (trusted) proxy wrote
            if nearest in ("http", "https"):
                environ["wsgi.url_scheme"] = nearest
        return self.wsgi_app(environ, start_response)


def _peer_trusted(peer: str, networks) -> bool:
    try:
        addr = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(addr.version == n.version and addr in n for n in networks)


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
        # The console's static files (bootstrap, jquery, console.js: no user data, and govern sends no other file)
        # are cached by the browser for an hour instead of revalidated on every page: each console page loads
        # about 20 of them, one round trip each (tests/admin/test_console_pages.py checks the header).
        SEND_FILE_MAX_AGE_DEFAULT=3600,
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
    # govern.api.proxy.ProxyEdge serves the proxy route in front of Flask and does the same with the same
    # helpers (correlation id, SECURITY_HEADERS, log_request): a new per-request hook here belongs there too.
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
        for name, value in SECURITY_HEADERS:
            response.headers.setdefault(name, value)
        # operation, target/source system, outcome: g.log_fields, from govern.ops.observe
        log_request(request.method, request.path, response.status_code, getattr(g, "started", time.perf_counter()),
                    g.get("log_fields"))
        return response


def _register_blueprints(app: Flask) -> None:
    for module in (health, metrics, oauth, broker, openapi, secrets_api, proxy, breakers, landscape, findings,
                   rotations, connect, decisions):
        app.register_blueprint(module.bp)
    init_admin(app)  # the web console at /admin
