"""The console is self-contained and locked down: every asset comes from govern, under a strict CSP.

- Content-Security-Policy (CSP Level 3, https://www.w3.org/TR/CSP3/) on every response under /admin: only
  govern's own origin, no inline script or style, no framing. Bootstrap's CSS draws a few icons as `data:`
  SVG images, hence `img-src 'self' data:`.
- One widening, on one page only: a principal's page that shows an admin the Connect button adds the
  credential's authorize origin (declared by an admin in the landscape) to `form-action`, because the
  button's POST answers with a redirect to the upstream's authorize page and CSP checks a form's redirects
  too (`g.csp_form_origins`, govern/admin/views/landscape.py).
- The Bootswatch theme that flask-admin ships starts with `@import url(https://fonts.googleapis.com/...)`:
  the console serves that CSS without the import (the theme's font stack falls back to the system fonts),
  rather than letting every page load ask Google for a font.
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import flask_admin
from flask import Blueprint, Response, g, request

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
THEME = "flatly"


def policy(form_origins=()) -> str:
    """The console's CSP; `form_origins` (scheme://host[:port] only) are added to form-action."""
    origins = [o for o in form_origins if re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", o)]
    if not origins:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace("form-action 'self'", "form-action 'self' " + " ".join(origins))


_IMPORT = re.compile(rb"@import\s+url\([^)]*\)\s*;?")

bp = Blueprint("console_theme", __name__, url_prefix="/admin")


@cache
def _theme_css(swatch: str) -> bytes:
    path = Path(flask_admin.__file__).parent / "static" / "bootstrap" / "bootstrap4" / "swatch" / swatch / "bootstrap.min.css"
    return _IMPORT.sub(b"", path.read_bytes())


@bp.route("/theme/bootstrap.min.css")
def theme_css():
    response = Response(_theme_css(THEME), mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def install(app) -> None:
    """Register the theme route and the CSP header (called once from govern.admin.init_admin)."""
    app.register_blueprint(bp)

    @app.after_request
    def _console_csp(response):
        if request.path.startswith("/admin"):
            response.headers["Content-Security-Policy"] = policy(getattr(g, "csp_form_origins", ()))
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
