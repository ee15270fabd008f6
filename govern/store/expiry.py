"""What expires, read from the store (docs/expiry.md): the expiry items govern.domain.expiry forecasts.

- Declared: a credential's `client_secret_expires:` date.
- Learned: each stored refresh token's expiry from the credential's `refresh_token_lifetime:` / `refresh_token_idle:`,
  counted from when govern stored the token it holds (its issue) and from its last successful use (the newest
  succeeded refresh in the refresh journal); and each certificate govern holds in an imported Salesforce org
  (`govern import salesforce`), from its `notAfter`.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import col
from sqlalchemy.orm import Session, sessionmaker

from govern.domain.expiry import ExpiryItem, date_end, forecast, refresh_token_expiry
from govern.domain.expiry import Forecast
from govern.store.tables import ExternalCredential, SalesforceImport, SecretRef
from govern.store.upstream_tables import RefreshJournal


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def expiry_items(session: Session) -> list[ExpiryItem]:
    creds = session.execute(sa.select(ExternalCredential)).scalars().all()
    scheduled = {owner for (owner,) in session.execute(
        sa.select(col(SecretRef.owner)).where(col(SecretRef.owner_kind) == "credential",
                                            col(SecretRef.schedule).is_not(None)))}
    items: list[ExpiryItem] = []
    for c in creds:
        expiry: dict[str, Any] = c.expiry or {}
        rotation = bool(c.rotation) or c.external_id in scheduled
        if expiry.get("client_secret_expires"):
            items.append(ExpiryItem("client_secret", c.external_id, "client_secret",
                                    date_end(dt.date.fromisoformat(expiry["client_secret_expires"])), "declared",
                                    rotation))
        lifetime, idle = expiry.get("refresh_token_lifetime"), expiry.get("refresh_token_idle")
        if lifetime or idle:
            items.extend(_refresh_tokens(session, c.external_id, lifetime, idle, rotation))
    items.extend(_certificates(session))
    return items


def _refresh_tokens(session: Session, credential: str, lifetime: float | None, idle: float | None,
                    rotation: bool) -> list[ExpiryItem]:
    refs = session.execute(sa.select(col(SecretRef.principal), col(SecretRef.set_at)).where(
        col(SecretRef.owner_kind) == "credential", col(SecretRef.owner) == credential,
        col(SecretRef.field) == "refresh_token", col(SecretRef.current_version).is_not(None))).all()
    used: dict[str | None, dt.datetime | None] = dict(session.execute(
        sa.select(col(RefreshJournal.principal), sa.func.max(col(RefreshJournal.finished_at)))
        .where(col(RefreshJournal.credential) == credential, col(RefreshJournal.state) == "succeeded")
        .group_by(col(RefreshJournal.principal))).all())
    out = []
    for principal, set_at in refs:
        issued = _aware(set_at)
        if issued is None:
            continue
        expires = refresh_token_expiry(issued, _aware(used.get(principal or "")), lifetime_seconds=lifetime,
                                       idle_seconds=idle)
        if expires is not None:
            out.append(ExpiryItem("refresh_token", credential, f"principal {principal or '-'}", expires, "learned",
                                  rotation))
    return out


def _certificates(session: Session) -> list[ExpiryItem]:
    out = []
    for name, model in session.execute(sa.select(col(SalesforceImport.name), col(SalesforceImport.model))).all():
        for app_id, app in sorted(((model or {}).get("connected_apps") or {}).items()):
            not_after = ((app or {}).get("certificate") or {}).get("not_after")
            if not not_after:
                continue
            try:
                expires = _aware(dt.datetime.fromisoformat(not_after))
            except ValueError:
                continue
            if expires is not None:
                out.append(ExpiryItem("certificate", f"{name}/{app_id}", "certificate", expires, "learned", False))
    return out


def read_forecast(sessions: sessionmaker[Session], now: dt.datetime,
                  within_days: float | None = None) -> list[Forecast]:
    with sessions() as s:
        return forecast(expiry_items(s), now, within_days)
