"""Management API authentication: `Authorization: Bearer gvn_...` admin tokens, checked against roles."""
from __future__ import annotations

from functools import wraps

from flask import current_app, g, request

from govern.errors import Forbidden, Unauthorized
from govern.store.admins import user_for_token

ROLE_RANK = {"auditor": 0, "operator": 1, "admin": 2}


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def require_admin(role: str = "auditor"):
    """Allow admin users whose role ranks at least `role` (auditor < operator < admin)."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            token = bearer_token()
            if not token or not token.startswith("gvn_"):
                raise Unauthorized("a management API token is required (govern admin token USER)")
            services = current_app.extensions["govern"]
            with services.sessions() as session:
                user = user_for_token(session, token)
            if user is None:
                raise Unauthorized("the token is unknown or expired")
            if ROLE_RANK[user.role] < ROLE_RANK[role]:
                raise Forbidden(f"this needs the {role} role")
            g.admin_user = user.external_id
            g.admin_role = user.role
            return view(*args, **kwargs)

        wrapper.admin_role = role  # read by govern/api/openapi.py
        return wrapper

    return decorator
