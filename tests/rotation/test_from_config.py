"""Schedules from governance.yaml, end to end through the CLI with the real LocalSecretStore:
apply the example landscape, put secrets, move the clock, `govern rotate --due` lists them, `--commit`
rotates them (govern.rotation.sync keeps SecretRef in step with the credential's rotation config)."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlmodel import select

from govern.store.db import session_scope
from govern.store.tables import SecretRef
from tests.rotation.http_recorder import Recorder, basic_auth

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "governance.yaml"
ERP_TOKEN_URL = "https://erp.acme.example/sap/bc/sec/oauth2/token"
ERP_REF = "credential/erp-oauth/client_secret"


@pytest.fixture
def cli(monkeypatch, runner, clock, notifier):
    """The CLI's Services share the test's clock and notifier (the store is the real local one)."""
    import govern.cli.context as context
    from govern.bootstrap import build_services

    built = []

    def build(settings, **kw):
        svc = build_services(settings, clock=clock, notifier=notifier)
        built.append(svc)
        return svc

    monkeypatch.setattr(context, "build_services", build)
    yield runner
    for svc in built:
        svc.close()


def _ok(result, code=0):
    assert result.exit_code == code, result.output
    return result.output


def _ref(services, name) -> SecretRef:
    with session_scope(services.sessions) as s:
        return s.execute(select(SecretRef).where(SecretRef.external_id == name)).scalar_one()


def _aware(value):
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def test_apply_put_move_clock_rotate(cli, services, clock, tmp_path):
    seen = []

    def token(req):
        seen.append(basic_auth(req))
        return 200, {"access_token": "upstream-token", "token_type": "Bearer", "expires_in": 300}

    with Recorder({"/token": token}) as upstream:
        doc = tmp_path / "governance.yaml"
        doc.write_text(EXAMPLE.read_text().replace(ERP_TOKEN_URL, upstream.url + "/token"))
        _ok(cli.invoke(["apply", "-f", str(doc)]))
        _ok(cli.invoke(["secrets", "put", "erp-oauth", "--field", "client_secret"], input="erp-old-secret-value\n"))
        _ok(cli.invoke(["secrets", "put", "stripe-restricted-key", "--field", "api_key"], input="rk_live_example_1\n"))
        _ok(cli.invoke(["secrets", "put", "--user", "erp-order-sync", "--field", "client_secret"],
                       input="gvs_user_secret_value_1\n"))

        erp = _ref(services, ERP_REF)
        assert (erp.rotator, erp.schedule, erp.overlap_seconds) == ("upstream_client_secret", "90d", 86400)
        assert clock.now() + dt.timedelta(days=90) <= _aware(erp.next_due_at) <= clock.now() + dt.timedelta(days=90, hours=1)
        user = _ref(services, "integration_user/erp-order-sync/client_secret")
        assert (user.rotator, user.schedule, user.next_due_at) == ("client_secret", None, None)  # on demand

        assert "nothing is due" in _ok(cli.invoke(["rotate", "--due"]))
        clock.advance(days=91)
        out = _ok(cli.invoke(["rotate", "--due"]))
        assert "dry run: 2 item(s)" in out
        assert re.search(r"would_rotate\s+credential/erp-oauth/client_secret\s+rotator upstream_client_secret", out)
        assert re.search(r"skipped\s+credential/stripe-restricted-key/api_key\s+no rotator configured", out)

        out = _ok(cli.invoke(["rotate", "--due", "--commit"]))  # manual set: waits for the operator
        run_id = int(re.search(r"awaiting_confirmation\s+credential/erp-oauth/client_secret run=(\d+)", out).group(1))
        out = _ok(cli.invoke(["rotate", "confirm", str(run_id)]))
        assert "finished" in out, out
        assert seen and seen[-1][0] == "GOVERN_ERP_CLIENT" and seen[-1][1] != "erp-old-secret-value"

    out = _ok(cli.invoke(["rotate", "history", ERP_REF]))
    assert "finished" in out and "test:ok" in out
    erp = _ref(services, ERP_REF)
    assert _aware(erp.next_due_at) >= clock.now() + dt.timedelta(days=90)

    # The broker's ordered list: the new secret first, the old one as fallback during the overlap.
    from tests.rotation.secret_order import ordered_secrets

    order = [s.reveal() for s in ordered_secrets(services, ERP_REF, clock.now())]
    assert order[1:] == ["erp-old-secret-value"] and order[0] == seen[-1][1]
    out = _ok(cli.invoke(["rotate", "--due"]))
    assert ERP_REF not in out and "stripe-restricted-key" in out  # rotated by hand: due until someone does


def test_apply_changes_follow_to_stored_secrets(cli, services, clock, tmp_path):
    doc = tmp_path / "governance.yaml"
    text = EXAMPLE.read_text()
    doc.write_text(text)
    _ok(cli.invoke(["apply", "-f", str(doc)]))
    _ok(cli.invoke(["secrets", "put", "erp-oauth", "--field", "client_secret"], input="erp-old-secret-value\n"))
    first_due = _aware(_ref(services, ERP_REF).next_due_at)

    doc.write_text(text.replace("rotation: {every: 90d, overlap: 24h}\n\n  - id: snowflake",
                                "rotation: {every: 30d, overlap: 2h}\n\n  - id: snowflake"))
    _ok(cli.invoke(["apply", "-f", str(doc)]))
    erp = _ref(services, ERP_REF)
    assert (erp.schedule, erp.overlap_seconds) == ("30d", 7200)
    assert _aware(erp.next_due_at) < first_due  # recomputed from when the value was set

    doc.write_text(text.replace("    rotation: {every: 90d, overlap: 24h}\n\n  - id: snowflake",
                                "\n  - id: snowflake"))
    _ok(cli.invoke(["apply", "-f", str(doc)]))
    erp = _ref(services, ERP_REF)
    assert (erp.rotator, erp.schedule, erp.next_due_at) == ("upstream_client_secret", None, None)
