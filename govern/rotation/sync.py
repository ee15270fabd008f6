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
The runner only moves `next_due_at` forward when a rotation finishes (the finish step, written by govern.store.rotation_runs).

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

from govern.config_as_code.units import parse_duration
from govern.domain.rotation import RefRotationSettings, aware
from govern.ports import RotationSettingsRows
from govern.rotation import schedule as schedules

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


def sync_refs(rows: RotationSettingsRows, now: dt.datetime, *, ref_ids: Iterable[int] = (),
              credentials: Iterable[str] = (), users: Iterable[str] = (), restart: bool = False, rng: Any = None) -> int:
    """Bring the rotation settings of the secrets `ref_ids` (and of every secret of `credentials` and `users`)
    in line with their configuration, in the transaction of `rows` (govern.store.rotation_refs, over the
    caller's session). Returns how many refs changed.

    `next_due_at` is recomputed when the schedule changed, or with `restart` (a new value was just put):
    from `now` on a restart, else from when the current value was set. It is left alone while a run is
    active (the run's finish sets it) and cleared when there is no schedule any more."""
    rng = rng if rng is not None else random.SystemRandom()
    changed = 0
    for ref in rows.load(ref_ids=ref_ids, credentials=credentials, users=users):
        want = policy_for(ref.owner_kind, ref.field, ref.protocol, ref.rotation)
        next_due_at = ref.next_due_at
        if not ref.run_active:
            if want.schedule is None:
                next_due_at = None
            elif restart or want.schedule != ref.schedule or next_due_at is None:
                base = now if restart else (aware(ref.set_at) or now)
                next_due_at = schedules.next_due(want.schedule, base, rng)
        after = RefRotationSettings(ref.ref_id, want.rotator, want.schedule, want.overlap_seconds, next_due_at)
        if (after.rotator, after.schedule, after.overlap_seconds, after.next_due_at) != (
                ref.rotator, ref.schedule, ref.overlap_seconds, ref.next_due_at):
            rows.save(after)
            changed += 1
    return changed
