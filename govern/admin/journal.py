"""The admin action log: who did what, when, with before and after. Values that are secrets never get here:
callers pass descriptions ("set on DATE, version N"), and `_scrub` drops any key that names a secret."""
from __future__ import annotations

from typing import Any

from flask import g, has_app_context

from govern.store.tables import AdminAction

_SECRET_WORDS = ("secret", "password", "token", "private_key", "api_key", "value")


def _scrub(data: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if any(word in key.lower() for word in _SECRET_WORDS) and key.lower() not in ("secret_status",):
            out[key] = "[redacted]"
        elif isinstance(value, dict):
            out[key] = _scrub(value)
        else:
            out[key] = value
    return out


def record(session, *, actor: str, action: str, subject_kind: str, subject: str,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None, at=None) -> AdminAction:
    """Add one AdminAction row to `session` (committed with the caller's transaction)."""
    row = AdminAction(actor=actor, action=action, subject_kind=subject_kind, subject=subject,
                      before=_scrub(before), after=_scrub(after),
                      correlation_id=getattr(g, "correlation_id", None) if has_app_context() else None)
    if at is not None:
        row.at = at
    session.add(row)
    return row
