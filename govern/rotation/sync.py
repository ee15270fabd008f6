"""A stored secret's rotation settings follow its credential's `rotation` configuration (governance.yaml).

The one source of truth is `ExternalCredential.rotation` (and `IntegrationUser.rotation` for a user's client
secret) (`{"every": "90d" | "cron": "...", "overlap": "24h"}`,
docs/governance-schema.md), together with what the secret is (its owner, field and the credential's
protocol). `SecretRef.rotator`, `schedule`, `overlap_seconds` and `next_due_at` are a derived copy: the
runner claims due work with one indexed query on `secret_ref` (`next_due_at <= now ... FOR UPDATE SKIP
LOCKED`), which a join through the credential's JSON could not serve. The copy is written only here, by
`sync_refs`, which the two places that change either side call in their own transaction:
- `SecretService` when a secret is put (a new value: the schedule restarts from now);
- `govern.landscape.apply_document` when an apply creates, updates or deletes credentials.
The runner only moves `next_due_at` forward when a rotation finishes (govern.rotation.runner._promote).

Which rotator a secret gets:
- an integration user's govern `client_secret` -> `client_secret` (govern checks it; both secrets stay
  valid during the overlap), on the user's own `rotation` schedule (`IntegrationUser.rotation`), or on
  demand (`govern rotate NAME --commit`) when it has none;
- an OAuth credential's `client_secret` (RFC 6749 section 2.3.1) -> `upstream_client_secret`;
- anything else (private keys, refresh tokens obtained by consent, passwords, API keys): no automatic
  rotator. With a schedule they are rotated by hand: the worker sends reminders when they are due and
  `govern rotate --due` lists them as skipped.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any
from collections.abc import Iterable

from sqlmodel import col, select

from govern.config_as_code.units import parse_duration
from govern.rotation import machine, schedule as schedules
from govern.store.tables import ExternalCredential, IntegrationUser, RotationRun, SecretRef

DEFAULT_OVERLAP_SECONDS = 86400


@dataclass(frozen=True)
class RefPolicy:
    rotator: str | None
    schedule: str | None
    overlap_seconds: int


def rotator_for(owner_kind: str, field: str, protocol: str | None) -> str | None:
    if owner_kind == "integration_user" and field == "client_secret":
        return "client_secret"
    if owner_kind == "credential" and field == "client_secret" and (protocol or "").startswith("oauth2"):
        return "upstream_client_secret"
    return None


def policy_for(owner_kind: str, field: str, protocol: str | None, rotation: dict | None) -> RefPolicy:
    rotation = rotation or {}
    overlap = rotation.get("overlap")
    return RefPolicy(rotator=rotator_for(owner_kind, field, protocol),
                     schedule=rotation.get("every") or rotation.get("cron") or None,
                     overlap_seconds=int(parse_duration(overlap)) if overlap else DEFAULT_OVERLAP_SECONDS)


def sync_refs(session, now: dt.datetime, *, refs: Iterable[SecretRef] | None = None,
              credentials: Iterable[str] | None = None, users: Iterable[str] | None = None,
              restart: bool = False, rng: Any = None) -> int:
    """Bring the rotation settings of `refs` (or of every secret of `credentials`) in line with their
    configuration, in the caller's transaction. Returns how many refs changed.

    `next_due_at` is recomputed when the schedule changed, or with `restart` (a new value was just put):
    from `now` on a restart, else from when the current value was set. It is left alone while a run is
    active (the run's finish sets it) and cleared when there is no schedule any more."""
    rng = rng if rng is not None else random.SystemRandom()
    if refs is None:
        names, user_names = sorted(set(credentials or ())), sorted(set(users or ()))
        refs = []
        if names:
            refs += session.execute(select(SecretRef).where(SecretRef.owner_kind == "credential",
                                                            col(SecretRef.owner).in_(names))).scalars().all()
        if user_names:
            refs += session.execute(select(SecretRef).where(SecretRef.owner_kind == "integration_user",
                                                            col(SecretRef.owner).in_(user_names))).scalars().all()
        if not refs:
            return 0
    refs = list(refs)
    owners = sorted({r.owner for r in refs if r.owner_kind == "credential"})
    creds = {c.external_id: c for c in session.execute(
        select(ExternalCredential).where(col(ExternalCredential.external_id).in_(owners))).scalars()} if owners else {}
    user_owners = sorted({r.owner for r in refs if r.owner_kind == "integration_user"})
    user_rotation = dict(session.execute(select(IntegrationUser.external_id, IntegrationUser.rotation).where(
        col(IntegrationUser.external_id).in_(user_owners))).all()) if user_owners else {}
    active = set(session.execute(select(RotationRun.secret_ref_id).where(
        col(RotationRun.secret_ref_id).in_([r.id for r in refs if r.id is not None]),
        col(RotationRun.state).in_(machine.ACTIVE))).scalars()) if refs else set()
    changed = 0
    for ref in refs:
        cred = creds.get(ref.owner) if ref.owner_kind == "credential" else None
        rotation = cred.rotation if cred else user_rotation.get(ref.owner) if ref.owner_kind == "integration_user" else None
        want = policy_for(ref.owner_kind, ref.field, cred.protocol if cred else None, rotation)
        before = (ref.rotator, ref.schedule, ref.overlap_seconds, ref.next_due_at)
        schedule_changed = want.schedule != ref.schedule
        ref.rotator, ref.schedule, ref.overlap_seconds = want.rotator, want.schedule, want.overlap_seconds
        if ref.id not in active:
            if want.schedule is None:
                ref.next_due_at = None
            elif restart or schedule_changed or ref.next_due_at is None:
                base = now if restart else (_aware(ref.set_at) or now)
                ref.next_due_at = schedules.next_due(want.schedule, base, rng)
        if (ref.rotator, ref.schedule, ref.overlap_seconds, ref.next_due_at) != before:
            session.add(ref)
            changed += 1
    return changed


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes
    return value
