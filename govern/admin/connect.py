"""Connecting a principal from the console (authorization code with PKCE; the flow is
govern.broker.upstream.connect.ConnectService).

The admin's POST starts the flow with `origin="console"` and the admin's name, both kept in govern's
server-side state of the flow (sealed in the cache under the state's hash), and the browser goes to the
upstream's authorize page. After consent the upstream sends the browser to `GET /oauth/callback`
(govern.api.connect), which hands a console flow back here: the admin lands on the principal's page with a
flash saying what happened. Where the browser lands is built from the flow's own credential and principal,
never from a query parameter, so the callback is not an open redirect.

A state that expired (or was already used) is gone with everything it carried; the signed session cookie
remembers which principal this browser was connecting, so that case lands on the console page too.
"""
from __future__ import annotations

from flask import current_app, flash, redirect, session, url_for

from govern.admin import journal
from govern.broker.upstream.connect import Connected, Pending
from govern.errors import GovernError
from govern.store.db import session_scope

SESSION_KEY = "console_connect"  # the principal ("credential/name") this browser is connecting


def principal_page(credential: str, principal: str) -> str:
    return url_for("console_principals.details_view", id=f"{credential}/{principal}")


def start(connect, credential: str, principal: str, actor: str) -> str:
    """Start the flow for the admin `actor`; returns the upstream's authorize URL to send the browser to."""
    redirect_uri = current_app.extensions["govern"].settings.public_endpoint("/oauth/callback")
    result = connect.start(credential, principal, redirect_uri, origin="console", actor=actor)
    session[SESSION_KEY] = f"{credential}/{principal}"
    current_app.logger.info("principal connect started", extra={"credential": credential, "principal": principal,
                                                                "actor": actor, "origin": "console"})
    return result["authorize_url"]


def record_connected(services, done: Connected) -> None:
    """The admin action journal names who connected the principal (whichever edge started the flow)."""
    with session_scope(services.sessions) as s:
        journal.record(s, actor=done.actor or "unknown", action="principal.connect", subject_kind="principal",
                       subject=f"{done.credential}/{done.principal}",
                       after={"connected_at": services.clock.now().isoformat(), "started_from": done.origin},
                       at=services.clock.now())


def connected(done: Connected):
    session.pop(SESSION_KEY, None)
    flash(f"Principal {done.principal} of {done.credential} is connected.", "success")
    return redirect(principal_page(done.credential, done.principal))


def failed(pending: Pending, error: GovernError):
    session.pop(SESSION_KEY, None)
    flash(f"Connecting {pending.principal} of {pending.credential} failed: {error.detail}. "
          "Nothing was changed; you can try again.", "error")
    return redirect(principal_page(pending.credential, pending.principal))


def unknown_state(error: GovernError):
    """The state is unknown, expired or used: back to the principal's page if this browser started a console
    flow (the signed session says which), else None (the callback answers problem+json as for the API)."""
    key = session.pop(SESSION_KEY, None)
    if not isinstance(key, str) or "/" not in key:
        return None
    credential, _, principal = key.rpartition("/")
    flash(f"Connecting {principal} of {credential} did not finish: {error.detail}.", "error")
    return redirect(principal_page(credential, principal))
