"""What the console says about a principal's connection (authorization code with PKCE, RFC 6749 section 4.1):
connected since, needs a reconnect since (and why), never connected, when its refresh token was last stored
and when it was last used. Read-only queries; values of secrets never come here (only "set on DATE, version N")."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlmodel import col, select

from govern.store.tables import AdminAction, Decision, ExternalCredential, NamedCredential, Principal, SecretRef

# Only this protocol takes a refresh token from a person's consent (govern.broker.upstream.connect).
CONNECTABLE = ("oauth2_refresh_token",)
RECONNECT_WHY = ("the upstream refused the stored refresh token (invalid_grant: revoked, expired or rotated "
                 "away); no upstream call is made for this principal until someone reconnects it")


@dataclass(frozen=True)
class PrincipalState:
    key: str  # "credential/name": the principal's page id
    credential: str
    name: str
    status: str  # connected | needs_reconnect | never_connected
    connected_at: dt.datetime | None
    needs_reconnect_at: dt.datetime | None
    refresh_token_set_at: dt.datetime | None
    refresh_token_version: int | None
    last_used_at: dt.datetime | None
    last_used_outcome: str | None
    connectable: bool
    disconnected_by: str | None = None  # the admin who disconnected it, when that is why it needs a reconnect

    @property
    def why(self) -> str | None:
        if self.status != "needs_reconnect":
            return None
        if self.disconnected_by is not None:
            return (f"disconnected by {self.disconnected_by}: govern makes no upstream call for this principal, and "
                    "the worker revokes its tokens at the provider; connect it again to use it")
        return RECONNECT_WHY

    @property
    def disconnectable(self) -> bool:
        """Anything to disconnect: connected, or refused upstream but still holding a stored refresh token."""
        return self.status == "connected" or (self.status == "needs_reconnect" and self.disconnected_by is None
                                              and self.refresh_token_version is not None)

    @property
    def label(self) -> str:
        return {"connected": "connected", "needs_reconnect": "needs a reconnect",
                "never_connected": "never connected"}[self.status]


def connectable(cred: ExternalCredential) -> bool:
    return cred.protocol in CONNECTABLE and bool(cred.authorize_url) and bool(cred.client_id)


def authorize_origin(cred: ExternalCredential) -> str | None:
    """The origin the browser is sent to when connecting (for the page's CSP form-action)."""
    if not connectable(cred):
        return None
    parts = urlsplit(cred.authorize_url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def principal_state(session, cred: ExternalCredential, principal: Principal) -> PrincipalState:
    ref = session.execute(select(SecretRef).where(
        SecretRef.owner_kind == "credential", SecretRef.owner == cred.external_id,
        SecretRef.principal == principal.name, SecretRef.field == "refresh_token")).scalars().first()
    named = select(NamedCredential.external_id).where(NamedCredential.credential_id == cred.id)
    last = session.execute(select(Decision.at, Decision.outcome).where(
        Decision.principal == principal.name, col(Decision.named_credential).in_(named),
        col(Decision.action).in_(("token", "proxy"))).order_by(col(Decision.id).desc()).limit(1)).first()
    stored = ref.set_at if ref and ref.current_version is not None else None
    # A refresh token put by hand (`govern secrets put ... --field refresh_token`) connects a principal too.
    since = max((t for t in (principal.connected_at, stored) if t is not None), key=_utc, default=None)
    disconnected_by = None
    if principal.needs_reconnect_at is not None:
        status = "needs_reconnect"
        if principal.connected_at is None:
            disconnected_by = _disconnected_by(session, f"{cred.external_id}/{principal.name}")
    elif since is not None:
        status = "connected"
    else:
        status = "never_connected"
    return PrincipalState(
        key=f"{cred.external_id}/{principal.name}", credential=cred.external_id, name=principal.name, status=status,
        connected_at=since, needs_reconnect_at=principal.needs_reconnect_at,
        refresh_token_set_at=stored,
        refresh_token_version=ref.current_version if ref else None,
        last_used_at=last[0] if last else None, last_used_outcome=last[1] if last else None,
        connectable=connectable(cred), disconnected_by=disconnected_by)


def _disconnected_by(session, key: str) -> str | None:
    """The admin whose disconnect is the principal's last connect or disconnect (`govern credentials disconnect`,
    the API's DELETE .../connection, the console), if it was one."""
    last = session.execute(select(AdminAction.action, AdminAction.actor).where(
        AdminAction.subject_kind == "principal", AdminAction.subject == key,
        col(AdminAction.action).in_(("disconnect", "principal.connect"))).order_by(
        col(AdminAction.id).desc()).limit(1)).first()
    return last[1] if last is not None and last[0] == "disconnect" else None


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite hands back naive UTC


def credential_principal_states(session, cred: ExternalCredential) -> list[PrincipalState]:
    rows = session.execute(select(Principal).where(Principal.credential_id == cred.id)
                           .order_by(Principal.name)).scalars().all()
    return [principal_state(session, cred, p) for p in rows]
