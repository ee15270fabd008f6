"""Console sign-in: scrypt password check.

No Flask here: the route in govern.admin.auth parses the form, applies the failed-sign-in rate limits
(per account and per (account, address), govern.ratelimit) and calls `sign_in`. The account itself is
no longer locked for everyone after a few failures: that let one person lock any admin out (issue #14).
A `locked_until` still set from before is honoured until it passes.

Every refusal looks the same to the caller (unknown user, wrong password, disabled, locked), so the
response never reveals whether a user exists (OWASP ASVS V2.2.1), and every path spends one scrypt
evaluation so timing does not tell them apart either.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import select

from govern.domain.passwords import verify_password
from govern.store.db import row_id, session_scope
from govern.store.tables import AdminUser

LOCK_AFTER = 5  # an account locked before issue #14 (locked_until with this many failures) stays locked


@dataclass(frozen=True)
class SignedIn:
    id: int
    username: str
    role: str


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def sign_in(sessions, username: str, password: str, now: dt.datetime) -> SignedIn | None:
    """Return the signed-in user, or None for every kind of refusal."""
    with session_scope(sessions) as s:
        user = s.scalars(select(AdminUser).where(AdminUser.external_id == username)).first()
        if user is None or user.disabled:
            verify_password(password, None)
            return None
        locked_until = _aware(user.locked_until)
        if locked_until is not None and now < locked_until:
            # Backing off or locked: refuse without looking at the password (so guessing makes no progress).
            verify_password(password, None)
            return None
        if not verify_password(password, user.password_hash):
            user.failed_attempts = (user.failed_attempts or 0) + 1  # shown to admins; locks nothing
            return None
        user.failed_attempts = 0
        user.locked_until = None
        user.last_login_at = now
        return SignedIn(id=row_id(user), username=user.external_id, role=user.role)


def active_user(sessions, user_id: int) -> SignedIn | None:
    """The user behind a console session, re-read on every request so role changes and disabling apply at once."""
    with sessions() as s:
        user = s.get(AdminUser, user_id)
        if user is None or user.disabled:
            return None
        return SignedIn(id=row_id(user), username=user.external_id, role=user.role)


def user_for_claims(sessions, claims: dict, username_claim: str, now: dt.datetime) -> SignedIn | None:
    """The console user named by a validated OpenID Connect ID token, or None.

    Only existing, enabled users sign in this way: the identity provider proves who someone is, govern
    decides what they may do (their role). An `email` claim counts only with `email_verified` true
    (OpenID Connect Core 1.0, section 5.1)."""
    name = claims.get(username_claim)
    if not isinstance(name, str) or not name:
        return None
    if username_claim == "email" and claims.get("email_verified") is not True:
        return None
    with session_scope(sessions) as s:
        user = s.scalars(select(AdminUser).where(AdminUser.external_id == name)).first()
        if user is None or user.disabled:
            return None
        locked_until = _aware(user.locked_until)
        if locked_until is not None and now < locked_until and (user.failed_attempts or 0) >= LOCK_AFTER:
            return None  # a locked account stays locked, whichever way one signs in
        user.last_login_at = now
        return SignedIn(id=row_id(user), username=user.external_id, role=user.role)
