"""Upstream OAuth client secrets (RFC 6749 section 2.3.1), kept as an ordered list of versions.

While the overlap lasts the credential has two usable secrets: `current` (tried first) and `previous`
(the fallback). `ordered_secrets` is what the upstream token client reads (it calls the broker's
CredentialSecrets.candidates).

How the new secret reaches the upstream system is pluggable, from ExternalCredential.rotation["set"]:
- {"kind": "http", "url": ..., "auth_secret_path": optional store path of a bearer token,
   "revoke_url": optional}: a JSON POST {"client_id", "client_secret"} to the system's management API,
   with an Idempotency-Key so a resumed step is safe;
- "manual" or {"kind": "manual"}: nothing is sent; the run waits in awaiting_confirmation, a reminder is
  sent, and an operator runs `govern rotate confirm RUN_ID` once the secret is in place.
The test step asks the credential's token endpoint for a client_credentials token with the new secret.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlmodel import select
import requests

from govern.domain.secret import Secret
from govern.errors import NotFound
from govern.ports import SecretStore
from govern.rotation.rotators.base import NotConfigured, RotationContext, RotationTestFailed, StoredSecretRotator
from govern.store.db import session_scope
from govern.store.tables import ExternalCredential, SecretRef
from govern.broker.upstream.secret_refs import CredentialSecrets
from govern.store.credential_secret_refs import CredentialSecretRefRepo


def _credential(ctx: RotationContext) -> ExternalCredential:
    with session_scope(ctx.services.sessions) as s:
        cred = s.execute(select(ExternalCredential).where(ExternalCredential.external_id == ctx.ref.owner)).scalar_one_or_none()
        if cred is None:
            raise NotFound(f"no external credential {ctx.ref.owner}")
        return cred


def _set_config(cred: ExternalCredential) -> dict[str, Any]:
    raw = (cred.rotation or {}).get("set", "manual")
    return {"kind": raw} if isinstance(raw, str) else dict(raw)


def _http():
    return requests


class UpstreamClientSecretRotator(StoredSecretRotator):
    name = "upstream_client_secret"
    manual = True

    def set(self, ctx: RotationContext) -> bool:
        cred = _credential(ctx)
        cfg = _set_config(cred)
        if cfg.get("kind") == "manual":
            return False
        if cfg.get("kind") != "http" or not cfg.get("url"):
            raise NotConfigured(f"credential {cred.external_id}: rotation.set must be 'manual' or {{kind: http, url}}")
        headers = {"Idempotency-Key": f"govern-rotation-{ctx.run_id}-set"}
        if cfg.get("auth_secret_path"):
            headers["Authorization"] = "Bearer " + ctx.store.get(cfg["auth_secret_path"]).reveal()
        try:
            resp = _http().post(cfg["url"], json={"client_id": cred.client_id, "client_secret": ctx.pending().reveal()},
                                headers=headers, timeout=float(cfg.get("timeout", 10)))
        except Exception as exc:  # noqa: BLE001 - the exception text may quote the request
            raise RotationTestFailed(f"management endpoint unreachable ({type(exc).__name__})") from None
        if resp.status_code >= 300:
            raise RotationTestFailed(f"management endpoint answered {resp.status_code}")
        return True

    def test(self, ctx: RotationContext) -> None:
        cred = _credential(ctx)
        if not cred.token_url:
            raise RotationTestFailed(f"credential {cred.external_id} has no token_url to test the new secret against")
        secret = ctx.pending().reveal()
        data = {"grant_type": "client_credentials"}
        if cred.scopes:
            data["scope"] = " ".join(cred.scopes)
        kw: dict[str, Any] = {"data": data, "timeout": 10}
        if cred.client_auth_method == "client_secret_post":
            data.update(client_id=cred.client_id or "", client_secret=secret)
        else:
            kw["auth"] = (cred.client_id or "", secret)
        try:
            resp = _http().post(cred.token_url, **kw)
        except Exception as exc:  # noqa: BLE001
            raise RotationTestFailed(f"token endpoint unreachable ({type(exc).__name__})") from None
        if resp.status_code != 200 or "access_token" not in (resp.json() if resp.content else {}):
            raise RotationTestFailed(f"token endpoint refused the new secret ({resp.status_code})")

    def revoke_previous(self, ctx: RotationContext, version: int | None) -> None:
        cfg = _set_config(_credential(ctx))
        if cfg.get("kind") != "http" or not cfg.get("revoke_url") or version is None:
            return None  # manual targets: the operator removes the old secret at the system
        cred = _credential(ctx)
        resp = _http().post(cfg["revoke_url"], json={"client_id": cred.client_id,
                                                     "client_secret": ctx.store.get(ctx.ref.path, version=version).reveal()},
                            headers={"Idempotency-Key": f"govern-revoke-{ctx.ref.id}-{version}"}, timeout=10)
        if resp.status_code >= 300 and resp.status_code != 404:
            raise RotationTestFailed(f"revocation endpoint answered {resp.status_code}")


def ordered_secrets(sessions, store: SecretStore, secret_ref: str, now: dt.datetime) -> list[Secret]:
    """The secrets to try, in order: current first, then the previous one while its overlap lasts.

    Exactly what the upstream token client tries (govern.broker.upstream.secret_refs.CredentialSecrets
    .candidates, which this calls), so a rotation test and the broker can never disagree."""
    with session_scope(sessions) as s:
        ref = s.execute(select(SecretRef).where(SecretRef.external_id == secret_ref)).scalar_one_or_none()
        if ref is None:
            raise NotFound(f"no secret named {secret_ref}")
        owner, principal, field_name = ref.owner, ref.principal, ref.field

    class _At:  # a Clock stopped at `now`
        def now(self) -> dt.datetime:
            return now

        def monotonic(self) -> float:
            return time.monotonic()

    found = CredentialSecrets(CredentialSecretRefRepo(sessions), store, _At()).candidates(owner, principal, field_name)
    return [s.value for s in found]
