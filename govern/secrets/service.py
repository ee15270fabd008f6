"""SecretService: set a secret for a credential (and principal) or an integration user, and record where it lives.

The value goes to the SecretStore (the vault); the database gets only its address and versions
(SecretRef, SecretVersion). Order matters, so nothing is half-written:
1. validate the target and the value (nothing touched yet);
2. write to the store with check-and-set against the store's current version;
3. record the reference, reconciled from the store's own metadata.
If 2 fails nothing is recorded. If 3 fails the value is in the store under a new version but the
database does not say so; SecretRecordingFailed says exactly that, and running the same put again (or
`reconcile`) converges, because step 3 always records what the store reports.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker
from sqlmodel import col, select

from govern.domain.secret import Secret, secret_ref_name, validate_secret_value
from govern.errors import GovernError, NotFound, SecretNotFound, ValidationFailed, Conflict
from govern.ports import SecretMetadata, SecretStore
from govern.rotation.sync import sync_refs
from govern.store.rotation_refs import SqlRotationSettingsRows
from govern.secrets.errors import SecretRecordingFailed
from govern.store.db import row_id, session_scope
from govern.store.secret_status import SecretStatus, secret_statuses
from govern.store.upstream_principals import PrincipalRepo
from govern.store.tables import (AdminAction, ExternalCredential, IntegrationUser, Principal, SecretRef,
                                 SecretVersion, utcnow)
from govern.broker.upstream.reconnect import clear_needs_reconnect, safe_notifier
from govern.rotation import machine
from govern.store.tables import RotationRun
from govern.secrets.private_keys import parse_private_key
from govern.domain.client_auth import hash_client_secret

log = logging.getLogger("govern.secrets")

CLIENT_SECRET_METHODS = (None, "", "client_secret_basic", "client_secret_post")


def credential_fields(protocol: str, client_auth_method: str | None) -> tuple[str, ...]:
    """The secret fields a credential of this protocol can hold (its client authentication included)."""
    client_auth = ("private_key",) if client_auth_method == "private_key_jwt" else ("client_secret",)
    return {
        "oauth2_client_credentials": client_auth,
        "oauth2_refresh_token": client_auth + ("refresh_token",),
        # RFC 7523 section 2.1: the assertion is signed with the private key; client auth is optional.
        "oauth2_jwt_bearer": tuple(dict.fromkeys(("private_key",) + client_auth)),
        "basic": ("password",),
        "api_key_header": ("api_key",),
        "custom_header": ("value",),
    }.get(protocol, ())


# Fields that belong to one upstream identity, so they need a principal.
PER_PRINCIPAL_FIELDS = ("refresh_token",)
USER_FIELDS = ("client_secret",)


@dataclass(frozen=True)
class _Target:
    owner_kind: str
    owner: str
    principal: str | None
    field: str

    @property
    def path(self) -> str:
        return secret_ref_name(self.owner_kind, self.owner, self.principal, self.field)




class SecretService:
    def __init__(self, sessions: sessionmaker[Session], store: SecretStore, clock=None, notifier=None):
        self.sessions = sessions
        self.store = store
        self.clock = clock
        self.notifier = notifier

    # --- commands --------------------------------------------------------------------------------

    def put_for_credential(self, credential: str, field: str, raw: bytes | str | Secret, *,
                           principal: str | None = None, actor: str = "system",
                           correlation_id: str | None = None) -> SecretStatus:
        target = self._credential_target(credential, principal, field)
        status = self._put(target, raw, actor, correlation_id)
        if principal and field == "refresh_token":
            # A new refresh token is a reconnect: the broker may call the upstream for this principal again.
            clear_needs_reconnect(PrincipalRepo(self.sessions), safe_notifier(lambda: self.notifier), self._now(),
                                  credential=credential, principal=principal)
        return status

    def put_for_user(self, user: str, field: str, raw: bytes | str | Secret, *, actor: str = "system",
                     correlation_id: str | None = None) -> SecretStatus:
        target = self._user_target(user, field)
        return self._put(target, raw, actor, correlation_id)

    def reconcile(self, ref: str) -> SecretStatus:
        """Record what the store holds for an existing reference (after a failed recording)."""
        with self.sessions() as s:
            row = s.scalars(select(SecretRef).where(SecretRef.external_id == ref)).first()
            if row is None:
                raise NotFound(f"no secret reference {ref!r}")
            target = _Target(row.owner_kind, row.owner, row.principal, row.field)
        return self._record(target, self.store.metadata(target.path), actor="system", correlation_id=None,
                            user_secret=None, action="secret.reconcile")

    def delete(self, ref: str, *, actor: str = "system", correlation_id: str | None = None) -> dict:
        """Delete a stored secret: every version in the store, then its reference, version rows and rotation
        history. Refused while a rotation of it is under way. An integration user's client secret stops
        authenticating at once (both hashes are cleared). Recorded as an admin action (never a value).

        The store goes first: if the database step fails, running the same delete again converges."""
        with self.sessions() as s:
            row = s.scalars(select(SecretRef).where(SecretRef.external_id == ref)).first()
            if row is None:
                raise NotFound(f"no secret reference {ref!r}")
            running = s.scalars(select(RotationRun.id).where(RotationRun.secret_ref_id == row.id,
                                                             col(RotationRun.state).in_(machine.ACTIVE))).first()
            if running is not None:
                raise Conflict(f"{ref} is being rotated (run {running}); let the run finish or cancel it first")
            path = row.path
        self.store.delete(path)
        now = self._now()
        with session_scope(self.sessions) as s:
            row = s.scalars(select(SecretRef).where(SecretRef.external_id == ref)).one()
            runs = s.scalars(select(RotationRun).where(RotationRun.secret_ref_id == row.id)).all()
            for item in [*runs, *s.scalars(select(SecretVersion).where(SecretVersion.secret_ref_id == row.id)).all()]:
                s.delete(item)
            if row.owner_kind == "integration_user" and row.field == "client_secret":
                user = s.scalars(select(IntegrationUser).where(IntegrationUser.external_id == row.owner)).first()
                if user is not None:
                    user.client_secret_hash = user.previous_client_secret_hash = None
                    user.previous_secret_expires_at = None
                    user.updated_at = now
                    s.add(user)
            before = {"version": row.current_version, "store": row.store, "rotation_runs": len(runs)}
            s.flush()
            s.delete(row)
            s.add(AdminAction(actor=actor, action="secret.delete", subject_kind="secret_ref", subject=ref,
                              before=before, after={}, correlation_id=correlation_id))
        log.info("secret deleted", extra={"ref": ref, "store": self.store.kind})
        return {"ref": ref, "deleted": True, **before}

    # --- queries ---------------------------------------------------------------------------------

    def status(self, *, owner_kind: str | None = None, owner: str | None = None) -> list[SecretStatus]:
        return secret_statuses(self.sessions, owner_kind=owner_kind, owner=owner)

    def check_credential(self, credential: str) -> None:
        with self.sessions() as s:
            if s.scalars(select(ExternalCredential.id).where(ExternalCredential.external_id == credential)).first() is None:
                raise NotFound(f"unknown credential {credential!r}")

    def check_user(self, user: str) -> None:
        with self.sessions() as s:
            if s.scalars(select(IntegrationUser.id).where(IntegrationUser.external_id == user)).first() is None:
                raise NotFound(f"unknown integration user {user!r}")

    # --- the steps -------------------------------------------------------------------------------

    def _put(self, target: _Target, raw, actor: str, correlation_id: str | None) -> SecretStatus:
        secret = validate_secret_value(raw.reveal() if isinstance(raw, Secret) else raw)
        if target.field == "private_key":
            # Parsed and type-checked before anything is written (CLI, API and console alike).
            secret, _algorithm = parse_private_key(secret)
        path = target.path
        try:
            current = self.store.metadata(path).version
        except SecretNotFound:
            current = 0
        meta = self.store.put(path, secret, cas=current)
        return self._record(target, meta, actor=actor, correlation_id=correlation_id,
                            user_secret=secret if target.owner_kind == "integration_user" else None)

    def _record(self, target: _Target, meta: SecretMetadata, *, actor: str, correlation_id: str | None,
                user_secret: Secret | None, action: str = "secret.put") -> SecretStatus:
        now = self._now()
        try:
            with session_scope(self.sessions) as s:
                ref = s.scalars(select(SecretRef).where(SecretRef.external_id == target.path)).first()
                before = {"version": ref.current_version, "store": ref.store} if ref else {}
                if ref is None:
                    ref = SecretRef(external_id=target.path, owner_kind=target.owner_kind, owner=target.owner,
                                    principal=target.principal, field=target.field, path=target.path)
                ref.store = self.store.kind
                ref.mount = getattr(self.store, "mount", None)
                ref.current_version = meta.version
                ref.set_at = now
                s.add(ref)
                s.flush()
                self._record_versions(s, row_id(ref), meta)
                # Rotator, schedule and due date follow the credential's rotation config (one rule, there).
                sync_refs(SqlRotationSettingsRows(s), now, ref_ids=[row_id(ref)], restart=action == "secret.put")
                if user_secret is not None:
                    self._set_user_secret_hash(s, target.owner, user_secret, now)
                s.add(AdminAction(actor=actor, action=action, subject_kind="secret_ref", subject=target.path,
                                  before=before, after={"version": meta.version, "store": self.store.kind},
                                  correlation_id=correlation_id))
                status = _status(ref)
        except GovernError:
            raise
        except Exception as exc:  # the database failed after the store was written: say so plainly
            log.error("secret stored but not recorded",
                      extra={"ref": target.path, "stored_version": meta.version, "exc_type": type(exc).__name__})
            raise SecretRecordingFailed(
                f"{target.path} was stored as version {meta.version}, but recording its reference failed "
                f"({type(exc).__name__}); run the same put again to converge") from None
        log.info("secret set", extra={"ref": target.path, "stored_version": meta.version, "store": self.store.kind})
        return status

    @staticmethod
    def _record_versions(s: Session, ref_id: int, meta: SecretMetadata) -> None:
        versions = set(meta.versions or ()) | {meta.version}
        existing = {v.version: v for v in s.scalars(select(SecretVersion).where(SecretVersion.secret_ref_id == ref_id)).all()}
        for number in sorted(versions):
            row = existing.get(number) or SecretVersion(secret_ref_id=ref_id, version=number, stage="previous")
            if number == meta.version:
                row.stage = "current"
            elif row.stage == "current":
                row.stage = "previous"
            s.add(row)
        for number, row in existing.items():
            if number not in versions and row.stage == "current":
                row.stage = "previous"
                s.add(row)

    @staticmethod
    def _set_user_secret_hash(s: Session, user: str, secret: Secret, now: dt.datetime) -> None:
        # The broker authenticates integration users against a hash; the value itself stays in the vault.
        row = s.scalars(select(IntegrationUser).where(IntegrationUser.external_id == user)).one()
        row.client_secret_hash = hash_client_secret(secret.reveal())
        row.client_secret_set_at = now
        row.updated_at = now
        s.add(row)

    # --- validation ------------------------------------------------------------------------------

    def _credential_target(self, credential: str, principal: str | None, field: str) -> _Target:
        with self.sessions() as s:
            cred = s.scalars(select(ExternalCredential).where(ExternalCredential.external_id == credential)).first()
            if cred is None:
                raise NotFound(f"unknown credential {credential!r}")
            if principal is not None:
                found = s.scalars(select(Principal.id).where(Principal.credential_id == cred.id,
                                                             Principal.name == principal)).first()
                if found is None:
                    raise NotFound(f"credential {credential!r} has no principal {principal!r}")
            allowed = credential_fields(cred.protocol, cred.client_auth_method)
        if field not in allowed:
            raise ValidationFailed([{"location": "field", "message":
                                     f"unknown field {field!r} for a {cred.protocol} credential"
                                     f" (allowed: {', '.join(allowed) or 'none'})"}])
        if field in PER_PRINCIPAL_FIELDS and principal is None:
            raise ValidationFailed([{"location": "principal", "message": f"{field} belongs to one principal: "
                                     "name it with --principal (?principal= in the API)"}])
        return _Target("credential", credential, principal, field)

    def _user_target(self, user: str, field: str) -> _Target:
        with self.sessions() as s:
            row = s.scalars(select(IntegrationUser).where(IntegrationUser.external_id == user)).first()
            if row is None:
                raise NotFound(f"unknown integration user {user!r}")
            method = row.client_auth_method
        if field not in USER_FIELDS:
            raise ValidationFailed([{"location": "field", "message":
                                     f"unknown field {field!r} for an integration user (allowed: client_secret)"}])
        if method not in CLIENT_SECRET_METHODS:
            raise ValidationFailed([{"location": "field", "message":
                                     f"integration user {user!r} authenticates with {method}, not a client secret"}])
        return _Target("integration_user", user, None, field)

    def _now(self) -> dt.datetime:
        return self.clock.now() if self.clock is not None else utcnow()


def _status(ref: SecretRef) -> SecretStatus:
    set_at = ref.set_at
    if set_at is not None and set_at.tzinfo is None:
        set_at = set_at.replace(tzinfo=dt.UTC)
    return SecretStatus(ref=ref.external_id, owner_kind=ref.owner_kind, owner=ref.owner, principal=ref.principal,
                        field=ref.field, store=ref.store, version=ref.current_version, set_at=set_at)


def secret_service(services) -> SecretService:
    return SecretService(services.sessions, services.secret_store, services.clock,
                         notifier=services.notifier)
