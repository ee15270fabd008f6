"""Staleness, reviews and rotation (seed §17 "Regular review cadence", §6 "handle token refresh")."""
from __future__ import annotations

import datetime as dt
import re

from govern.audit.registry import Hit, rule
from govern.audit.model import AuditModel

S17_REVIEW = '§17 Monitor Proactively: "Regular review cadence (weekly integration health review)"'
S7_MIN = '§7 Apply the Principle of Least Privilege: "Every integration should have the minimum permissions needed"'
S6_ROTATE = '§6 Use Named Credentials: "They eliminate hardcoded credentials, handle token refresh, and support ' \
            'admin-managed configuration"'
TEMPORARY = re.compile(r"temp|temporary|backfill|migration|one[-_ ]?off|break[-_ ]?glass|emergency|onboarding", re.I)


def _days(model: AuditModel, when: dt.datetime | None) -> int | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (model.now - when).days


@rule("GOV-STALE-001", "Stale integration user", "medium", rationale=S17_REVIEW,
      remediation="Suspend or retire the integration user if the integration is gone; otherwise record why it is idle.")
def stale_user(model: AuditModel):
    """Idle for longer than policy.stale_days: the newest of the user's own last_used_at (set when the
    broker issues it a token) and its last allowed decision in the log (looked up stale_days back)."""
    limit = model.policy.stale_days
    for u in model.users.values():
        if u.status != "active":
            continue
        usage = model.usage.get(u.id)
        seen = (u.last_used_at, usage.last_at if usage else None, model.last_allowed_at.get(u.id))
        last = max([t for t in seen if t is not None], default=None,
                   key=lambda t: t if t.tzinfo else t.replace(tzinfo=dt.UTC))
        if last is not None:
            idle = _days(model, last)
            if idle is not None and idle > limit:
                yield Hit("integration_user", u.id, f"{u.id} has not been used for {idle} days",
                          {"last_used_at": last.isoformat(), "idle_days": idle, "policy_days": limit})
            continue
        age = _days(model, u.created_at)
        if age is not None and age > limit:
            # the log is only read stale_days back: an older use would not change the verdict
            yield Hit("integration_user", u.id, f"{u.id} has not been used in the last {limit} days "
                      f"(created {age} days ago)", {"last_used_at": None, "created_days_ago": age, "policy_days": limit})


@rule("GOV-STALE-002", "Named credential not used in the window", "low", rationale=S17_REVIEW, needs_usage=True,
      remediation="Remove the named credential and its grants if no integration calls it any more.")
def stale_named_credential(model: AuditModel):
    if not model.log_covers_window:
        return  # the log is younger than the window: not having seen a call proves nothing yet
    used = {p.named_credential for u in model.usage.values() for p in u.patterns}
    since = model.now - dt.timedelta(days=model.policy.window_days)
    for nc in model.named_credentials.values():
        if nc.created_at is not None and nc.created_at > since:
            continue  # younger than the window: it has not had the chance to be used (as for users)
        if nc.id not in used:
            yield Hit("named_credential", nc.id, f"no allowed call used {nc.id} in the last "
                      f"{model.policy.window_days} days", {"window_days": model.policy.window_days})


@rule("GOV-STALE-003", "Review date passed", "medium", rationale=S17_REVIEW,
      remediation="Review the integration user's access with its owner and set the next review date.")
def review_passed(model: AuditModel):
    for u in model.users.values():
        if u.status == "active" and (u.review_date is None or u.review_date < model.today):
            yield Hit("integration_user", u.id, f"{u.id} review " + (f"was due {u.review_date}" if u.review_date
                                                                     else "date is not set"),
                      {"review_date": u.review_date.isoformat() if u.review_date else None})


@rule("GOV-STALE-004", "Temporary permission set assigned without expiry", "medium", rationale=S7_MIN,
      remediation="Give the assignment an `until` date, or rename the set if it is permanent.")
def temp_without_expiry(model: AuditModel):
    for u in model.users.values():
        for a in u.assignments:
            ps = model.permission_sets.get(a.permission_set)
            text = f"{a.permission_set} {ps.description if ps else ''} {ps.label if ps else ''}"
            if a.expires_at is None and TEMPORARY.search(text):
                yield Hit("assignment", f"{u.id}/{a.permission_set}", f"{u.id} holds temporary set "
                          f"{a.permission_set} with no expiry", {"user": u.id, "permission_set": a.permission_set})


@rule("GOV-STALE-005", "Expired assignment still present", "low", rationale=S7_MIN,
      remediation="Delete the expired assignment (govern stops honouring it, but it clutters reviews).")
def expired_assignment(model: AuditModel):
    for u in model.users.values():
        for a in u.assignments:
            if a.expires_at is not None and a.expires_at < model.today:
                yield Hit("assignment", f"{u.id}/{a.permission_set}", f"{u.id}/{a.permission_set} expired "
                          f"{a.expires_at}", {"expires_at": a.expires_at.isoformat()})


@rule("GOV-STALE-006", "Suspended or retired user keeps access", "medium", rationale=S7_MIN,
      remediation="Remove the assignments and client credentials of users that are not active.")
def inactive_with_access(model: AuditModel):
    for u in model.users.values():
        if u.status != "active" and u.assignments:
            yield Hit("integration_user", u.id, f"{u.status} user {u.id} still holds "
                      f"{[a.permission_set for a in u.assignments]}", {"status": u.status})


@rule("GOV-ROT-001", "Secret older than policy", "high", rationale=S6_ROTATE,
      remediation="Rotate the secret (`govern rotate run NAME --commit`) and schedule rotation.")
def old_secret(model: AuditModel):
    limit = model.policy.secret_max_age_days
    for s in model.secrets:
        current = [v.created_at for v in s.versions if v.stage == "current" and v.created_at]
        age = _days(model, max(current) if current else s.set_at)
        if age is not None and age > limit:
            yield Hit("secret", s.id, f"secret {s.id} is {age} days old", {"age_days": age, "policy_days": limit})
    for u in model.users.values():
        age = _days(model, u.client_secret_set_at)
        if u.status == "active" and age is not None and age > limit:
            yield Hit("integration_user", u.id, f"client secret of {u.id} is {age} days old",
                      {"age_days": age, "policy_days": limit})


@rule("GOV-ROT-002", "Rotation not configured", "medium", rationale=S6_ROTATE,
      remediation="Set `rotation: {every: 90d, overlap: 24h}` on the credential, or on the integration user "
                  "for its client secret.")
def rotation_missing(model: AuditModel):
    for s in model.secrets:
        if s.owner_kind == "credential" and not s.schedule:
            cred = model.credentials.get(s.owner)
            if not (cred and (cred.rotation.get("every") or cred.rotation.get("cron"))):
                yield Hit("secret", s.id, f"secret {s.id} has no rotation schedule", {"owner": s.owner, "field": s.secret_field})
        elif s.owner_kind == "integration_user" and s.secret_field == "client_secret" and not s.schedule:  # noqa: S105 - a field name
            user = model.users.get(s.owner)
            if user is not None and user.status == "active":
                yield Hit("secret", s.id, f"the client secret of {s.owner} has no rotation schedule",
                          {"owner": s.owner, "field": s.secret_field})


@rule("GOV-ROT-003", "Rotation failing", "high", rationale=S6_ROTATE,
      remediation="Read the rotation run's steps (`govern rotate history NAME`), fix the cause and retry it "
      "(`govern rotate retry RUN_ID`).")
def rotation_failing(model: AuditModel):
    for s in model.secrets:
        if s.last_rotation_state in ("failed", "parked"):
            yield Hit("secret", s.id, f"last rotation of {s.id} {s.last_rotation_state}",
                      {"state": s.last_rotation_state, "error": s.last_rotation_error,
                       "at": s.last_rotation_at.isoformat() if s.last_rotation_at else None})


@rule("GOV-ROT-004", "Rotation overlap window left open", "high", rationale=S6_ROTATE,
      remediation="Revoke the previous secret version now that the overlap has passed.")
def overlap_open(model: AuditModel):
    for s in model.secrets:
        current = [v for v in s.versions if v.stage == "current"]
        for v in s.versions:
            if v.stage != "previous":
                continue
            ends = v.expires_at
            if ends is None and current and current[0].created_at:
                ends = current[0].created_at + dt.timedelta(seconds=s.overlap_seconds)
            over = _days(model, ends)
            if ends is not None and over is not None and ends.replace(tzinfo=ends.tzinfo or dt.UTC) < model.now:
                yield Hit("secret", s.id, f"previous version {v.version} of {s.id} is still valid after the overlap",
                          {"version": v.version, "overlap_ended": ends.isoformat()})
    for u in model.users.values():
        ends = u.previous_secret_expires_at
        if u.has_previous_secret and (ends is None or ends.replace(tzinfo=ends.tzinfo or dt.UTC) < model.now):
            yield Hit("integration_user", u.id, f"previous client secret of {u.id} is still accepted",
                      {"previous_secret_expires_at": ends.isoformat() if ends else None})
