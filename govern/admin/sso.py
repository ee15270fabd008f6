"""Optional console single sign-on with OpenID Connect (authorization code flow), through authlib.

Enabled when GOVERN_OIDC_ISSUER, GOVERN_OIDC_CLIENT_ID and GOVERN_OIDC_CLIENT_SECRET are set. authlib
keeps `state` and `nonce` in the session and validates the ID token (signature from the issuer's JWKS,
iss, aud, exp, nonce: OpenID Connect Core 1.0, section 3.1.3.7); govern then maps one claim
(GOVERN_OIDC_USERNAME_CLAIM, default `email`) to an existing console user. Nobody is created here.
"""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, flash, redirect, url_for
from authlib.integrations.flask_client import OAuth
from authlib.integrations.base_client.errors import OAuthError
from joserfc.errors import JoseError

from govern.admin.signin import user_for_claims
from govern.admin.auth import start_session

log = logging.getLogger("govern.admin")
bp = Blueprint("console_sso", __name__, url_prefix="/admin/login/sso")
REFUSED = "Single sign-on did not sign you in. Your account may not exist in govern, or may be disabled."


def install(app, settings) -> None:
    if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
        return
    oauth = OAuth(app)
    oauth.register("govern_oidc", client_id=settings.oidc_client_id, client_secret=settings.oidc_client_secret,
                   server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
                   client_kwargs={"scope": "openid email profile"})
    app.extensions["govern_sso"] = oauth.govern_oidc
    app.register_blueprint(bp)


@bp.get("/")
def start():
    client = current_app.extensions["govern_sso"]
    # The callback URL comes from GOVERN_PUBLIC_URL, never from this request's Host.
    settings = current_app.extensions["govern"].settings
    return client.authorize_redirect(settings.public_endpoint(url_for(".callback")))


@bp.get("/callback")
def callback():
    services = current_app.extensions["govern"]
    client = current_app.extensions["govern_sso"]
    try:
        token = client.authorize_access_token()
    except (OAuthError, JoseError, ValueError) as exc:
        # The type only: provider error text may echo request data.
        log.warning("console sso refused", extra={"exc_type": type(exc).__name__})
        flash(REFUSED, "error")
        return redirect(url_for("console_auth.login"))
    claims = dict(token.get("userinfo") or {})
    user = user_for_claims(services.sessions, claims, services.settings.oidc_username_claim, services.clock.now())
    if user is None:
        flash(REFUSED, "error")
        return redirect(url_for("console_auth.login"))
    start_session(user, method="oidc")
    return redirect(url_for("admin.index"))
