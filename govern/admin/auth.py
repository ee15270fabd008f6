"""Console sessions: sign-in and sign-out routes, the per-request session check, and cross-site defences.

The session cookie (Flask's signed cookie: HttpOnly, SameSite=Lax, Secure in production) carries only
the user id, a random session id and the time it was issued. Every request under /admin re-checks it
server-side:
- it expires `session_lifetime_seconds` after sign-in, by the services' clock (injectable in tests), not
  only by the cookie's own max-age;
- sign-out revokes the session id in the shared cache, so a copied cookie stops working too;
- the user is re-read from the database, so disabling or changing a role applies at once.

Every unsafe request under /admin needs a same-origin Origin (when the browser sends one) and a valid
CSRF token (Flask-WTF); an auditor's unsafe request is refused with 403 before any handler runs.
"""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request, session,
                   url_for)
from flask_wtf.csrf import CSRFProtect

from govern.admin import journal
from govern.admin.roles import current_user
from govern.admin.signin import active_user, sign_in
from govern.store.db import session_scope

bp = Blueprint("console_auth", __name__, url_prefix="/admin", template_folder="templates",
               static_folder="static", static_url_path="/console-static")

SESSION_KEY = "console"
REFUSED = "Sign-in failed. Check the username and password, or wait a moment and try again."
LIMITED = "Too many failed sign-ins for this account from here. Try again in {minutes} minute(s)."
_UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
_OPEN_ENDPOINTS = ("console_auth.login", "console_auth.static", "admin.static")


def _services():
    return current_app.extensions["govern"]


def _now_epoch() -> float:
    return _services().clock.now().timestamp()


def _revoked_key(sid: str) -> str:
    return f"console-session-revoked:{sid}"


def _load_user() -> None:
    g.console_user = None
    data = session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return
    services = _services()
    lifetime = services.settings.session_lifetime_seconds
    try:
        issued = float(data["iat"])
        sid = str(data["sid"])
        uid = int(data["uid"])
    except (KeyError, TypeError, ValueError):
        session.pop(SESSION_KEY, None)
        return
    if _now_epoch() - issued > lifetime or services.cache.get(_revoked_key(sid)) is not None:
        session.pop(SESSION_KEY, None)
        g.console_expired = True
        return
    g.console_user = active_user(services.sessions, uid)
    if g.console_user is None:
        session.pop(SESSION_KEY, None)


def _same_origin() -> bool:
    """Origin (or, without it, Referer) must name this host when the browser sends one (OWASP CSRF cheat sheet)."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return False
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return source != "null"
    # Host and port only: behind a TLS-terminating proxy the scheme seen here may differ from the browser's.
    return urlsplit(source).netloc.lower() == request.host.lower()


def install(app, csrf: CSRFProtect) -> None:
    """Guard every request under /admin (registered once, from govern.admin.init_admin)."""

    @app.before_request
    def _console_guard():
        if not request.path.startswith("/admin"):
            return None
        _load_user()
        if request.method in _UNSAFE:
            if not _same_origin():
                abort(403, "This request came from another site and was refused.")
            csrf.protect()
            if request.endpoint not in ("console_auth.login", "console_auth.logout"):
                user = current_user()
                if user is None:
                    abort(401)
                if user.role == "auditor":
                    abort(403, "The auditor role can read everything and change nothing.")
        return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user() is not None:
            return redirect(next_url)
        if getattr(g, "console_expired", False):
            flash("Your session has ended. Please sign in again.", "info")
        return render_template("govern_admin/login.html", next=next_url, username="",
                               sso=bool(current_app.extensions.get("govern_sso")))
    username = (request.form.get("username") or "").strip()[:200]
    password = request.form.get("password") or ""
    services = _services()
    address = _source_ip(services)
    account = username.lower()
    # Failed sign-ins are limited per (account, address), and per account; once the looser per-account
    # limit is used up, only an address with no failure for that account gets a password check. So a
    # guesser is stopped, and cannot lock the real admin (at another address) or every admin (behind
    # one proxy address) out. See docs/security.md "Rate limits".
    limits = services.rate_limits
    verdict = limits.test("console_failures_pair", account, address)
    if verdict.allowed:
        account_wide = limits.test("console_failures_account", account)
        if not account_wide.allowed and not limits.untouched("console_failures_pair", account, address):
            verdict = account_wide
    if not verdict.allowed:
        minutes = max(1, -(-verdict.retry_after // 60))
        response = current_app.make_response((render_template(
            "govern_admin/login.html", next=next_url, username=username, error=LIMITED.format(minutes=minutes),
            error_code="rate_limited", sso=bool(current_app.extensions.get("govern_sso"))), 429))
        response.headers["Retry-After"] = str(verdict.retry_after)
        return response
    user = sign_in(services.sessions, username, password, services.clock.now())
    if user is None:
        limits.hit("console_failures_pair", account, address)
        limits.hit("console_failures_account", account)
        return render_template("govern_admin/login.html", next=next_url, username=username, error=REFUSED,
                               sso=bool(current_app.extensions.get("govern_sso"))), 401
    start_session(user, method="password")
    return redirect(next_url)


def _source_ip(services) -> str:
    """The client's address: X-Forwarded-For only from GOVERN_TRUSTED_PROXIES (as the API does)."""
    return services.authenticator.source_ip(request.remote_addr or "", request.headers.get("X-Forwarded-For"))


def start_session(user, *, method: str) -> None:
    """A fresh session on sign-in: nothing from before survives (session fixation)."""
    session.clear()
    session.permanent = True
    session[SESSION_KEY] = {"uid": user.id, "sid": secrets.token_urlsafe(24), "iat": _now_epoch()}
    with session_scope(_services().sessions) as s:
        journal.record(s, actor=user.username, action="sign_in", subject_kind="admin_user", subject=user.username,
                       after={"method": method})


@bp.route("/logout", methods=["POST"])
def logout():
    data = session.get(SESSION_KEY)
    user = current_user()
    if isinstance(data, dict) and data.get("sid"):
        services = _services()
        services.cache.set(_revoked_key(str(data["sid"])), b"1", ttl=services.settings.session_lifetime_seconds + 60)
    if user is not None:
        with session_scope(_services().sessions) as s:
            journal.record(s, actor=user.username, action="sign_out", subject_kind="admin_user", subject=user.username)
    session.clear()
    flash("You have signed out.", "info")
    return redirect(url_for("console_auth.login"))


def _safe_next(value: str | None) -> str:
    """Only local paths under /admin: never an open redirect."""
    if value and value.startswith("/admin") and not value.startswith("//") and "\\" not in value:
        return value
    return url_for("admin.index")
