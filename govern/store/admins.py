"""Admin users and management API tokens."""
from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import select

from govern.domain.passwords import hash_password, token_hash
from govern.errors import NotFound, ValidationFailed
from govern.store.db import row_id, session_scope
from govern.store.tables import AdminToken, AdminUser, utcnow

ROLES = ("admin", "operator", "auditor")


def ensure_first_admin(sessions: sessionmaker[Session], username: str, password: str) -> bool:
    """Create the first admin unless an admin exists already. Returns whether one was created."""
    with session_scope(sessions) as s:
        if s.scalars(select(AdminUser).where(AdminUser.role == "admin")).first() is not None:
            return False
        _check_password(password)
        s.add(AdminUser(external_id=username, password_hash=hash_password(password), role="admin"))
        return True


def create_admin(sessions: sessionmaker[Session], username: str, password: str, role: str) -> AdminUser:
    if role not in ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
    _check_password(password)
    with session_scope(sessions) as s:
        if s.scalars(select(AdminUser).where(AdminUser.external_id == username)).first():
            raise ValidationFailed(f"admin user {username!r} exists already")
        user = AdminUser(external_id=username, password_hash=hash_password(password), role=role)
        s.add(user)
        s.flush()
        return user


def issue_token(sessions: sessionmaker[Session], username: str, label: str = "", ttl_days: int = 90) -> str:
    """Issue a management API token. The token is returned once; only its hash is stored."""
    token = "gvn_" + secrets.token_urlsafe(32)
    with session_scope(sessions) as s:
        user = s.scalars(select(AdminUser).where(AdminUser.external_id == username)).first()
        if user is None or user.disabled:
            raise NotFound(f"no active admin user {username!r}")
        s.add(AdminToken(admin_user_id=row_id(user), token_hash=token_hash(token), label=label,
                         expires_at=utcnow() + dt.timedelta(days=ttl_days)))
    return token


def user_for_token(session: Session, token: str) -> AdminUser | None:
    row = session.scalars(select(AdminToken).where(AdminToken.token_hash == token_hash(token))).first()
    if row is None:
        return None
    expires = row.expires_at
    if expires is not None and expires.replace(tzinfo=expires.tzinfo or dt.UTC) <= utcnow():
        return None
    user = session.get(AdminUser, row.admin_user_id)
    return None if user is None or user.disabled else user


def _check_password(password: str) -> None:
    if len(password) < 12:
        raise ValidationFailed("the password must have at least 12 characters")
