"""Console roles: auditor < operator < admin, checked in every view's `is_accessible` and every action handler.

- admin: everything.
- operator: runs and retries rotations, suspends and reactivates integration users; cannot grant permissions.
- auditor: reads everything and changes nothing.
"""
from __future__ import annotations

from flask import abort, g, redirect, request, url_for

from govern.api.auth import ROLE_RANK


def current_user():
    """The signed-in console user (govern.admin.signin.SignedIn), or None."""
    return getattr(g, "console_user", None)


def has_role(role: str) -> bool:
    user = current_user()
    return user is not None and ROLE_RANK.get(user.role, -1) >= ROLE_RANK[role]


def require_role(role: str) -> None:
    """Abort with 403 unless the signed-in user ranks at least `role`. Call it first in every write handler."""
    user = current_user()
    if user is None:
        abort(401, "Please sign in.")
    if not has_role(role):
        abort(403, f"This needs the {role} role; you are signed in as {user.role}.")


class ConsoleAccess:
    """Mixin for flask-admin views: readable by `read_role` and above; anonymous users go to the sign-in page."""

    read_role = "auditor"

    def is_accessible(self) -> bool:
        return has_role(self.read_role)

    def inaccessible_callback(self, name, **kwargs):
        if current_user() is None:
            return redirect(url_for("console_auth.login", next=request.full_path.rstrip("?")))
        abort(403, f"This page needs the {self.read_role} role.")
