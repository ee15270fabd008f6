"""An integration user's govern client secret rotates on the user's own `rotation` schedule (governance.yaml)."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import select

from govern.store.db import session_scope
from govern.store.tables import SecretRef
from tests.config_as_code.test_validate import BASE

REF = "integration_user/order-sync/client_secret"
SCHEDULED = BASE.replace("    permission_sets: [orders]\n",
                         "    permission_sets: [orders]\n    rotation: {every: 30d, overlap: 12h}\n")


def _apply(runner, tmp_path, text, name="g.yaml"):
    path = tmp_path / name
    path.write_text(text)
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output
    return result


def _ref(services) -> SecretRef:
    with services.sessions() as s:
        return s.exec(select(SecretRef).where(SecretRef.external_id == REF)).one()


def test_the_user_schedule_drives_its_client_secret(runner, tmp_path, services):
    _apply(runner, tmp_path, SCHEDULED)
    assert runner.invoke(["secrets", "put", "--user", "order-sync", "--field", "client_secret"],
                         input="user-secret-1").exit_code == 0
    ref = _ref(services)
    assert (ref.rotator, ref.schedule, ref.overlap_seconds) == ("client_secret", "30d", 12 * 3600)
    set_at = ref.set_at if ref.set_at.tzinfo else ref.set_at.replace(tzinfo=dt.UTC)
    due = ref.next_due_at if ref.next_due_at.tzinfo else ref.next_due_at.replace(tzinfo=dt.UTC)
    assert dt.timedelta(days=30) <= due - set_at <= dt.timedelta(days=30, hours=1)  # plus jitter

    exported = runner.invoke(["export"]).output
    assert "  rotation:\n    every: 30d\n    overlap: 12h\n" in exported
    assert "plan: 0 to create, 0 to update" in _apply(runner, tmp_path, exported, "exported.yaml").output

    # Due: `govern rotate --due` (a dry run) lists it with the client_secret rotator.
    with session_scope(services.sessions) as s:
        s.execute(sa.update(SecretRef).where(SecretRef.external_id == REF)
                  .values(next_due_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    due_run = runner.invoke(["rotate", "--due"])
    assert REF in due_run.output and "dry run" in due_run.output.lower(), due_run.output

    # A new schedule moves the due date; no schedule clears it (rotation on demand only).
    _apply(runner, tmp_path, SCHEDULED.replace("every: 30d", "every: 7d"))
    assert _ref(services).schedule == "1w"  # durations are normalised
    _apply(runner, tmp_path, BASE)
    ref = _ref(services)
    assert ref.schedule is None and ref.next_due_at is None and ref.rotator == "client_secret"


def test_a_private_key_jwt_user_cannot_have_a_rotation(runner, tmp_path):
    text = SCHEDULED.replace("    ip_ranges: [10.20.0.0/16]\n",
                             "    ip_ranges: [10.20.0.0/16]\n    auth: private_key_jwt\n"
                             "    jwks: {keys: [{kty: RSA, n: abc, e: AQAB, kid: k1}]}\n")
    path = tmp_path / "g.yaml"
    path.write_text(text)
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 2
    assert "a private_key_jwt user's key is its own" in result.output
