"""Expiry forecasting (issue #21, docs/expiry.md), on a landscape written by `govern apply`, with a controlled clock:
the worker's alert job posts one signed webhook per item at the lead time and a resolution once the item is renewed;
`/metrics` shows days to expiry; the dashboard lists the item under "Expiring in 30/60/90 days"; `govern expiry`
lists what expires; and refresh tokens are forecast from what govern holds (issue, last use)."""
from __future__ import annotations

import datetime as dt
import json
import re
import textwrap

import pytest

from govern.domain.expiry import ExpiryItem, buckets, date_end, forecast, refresh_token_expiry
from govern.notify import WebhookNotifier
from govern.store.db import session_scope
from govern.store.upstream_tables import RefreshJournal
from tests.admin.conftest import SettableClock, sign_in
from tests.ops.test_alerts import WEBHOOK_SECRET, receiver  # noqa: F401 - fixture

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def landscape(secret_expires: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: govern/v1
        kind: Landscape
        systems:
          - {{id: erp, kind: erp, scopes: [orders.read]}}
          - {{id: crm, kind: crm, scopes: [api]}}
        credentials:
          - id: erp-cc
            system: erp
            protocol: oauth2_client_credentials
            client_id: erp-client
            token_url: "https://erp.example/oauth/token"
            client_secret_expires: {secret_expires}
            principals: [{{name: default}}]
          - id: crm-rt
            system: crm
            protocol: oauth2_refresh_token
            client_id: crm-client
            token_url: "https://crm.example/oauth/token"
            refresh_token_lifetime: 90d
            refresh_token_idle: 30d
            rotation: {{every: 180d}}
            principals: [{{name: svc}}]
        """)


@pytest.fixture
def clock():
    return SettableClock(T0)


@pytest.fixture
def expiry_services(settings, clock):
    from govern.bootstrap import build_services

    svc = build_services(settings, clock=clock)
    yield svc
    svc.close()


def apply(runner, tmp_path, secret_expires: str) -> None:
    path = tmp_path / "governance.yaml"
    path.write_text(landscape(secret_expires))
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output


def alert_pass(services) -> list[tuple[str, str]]:
    """One worker pass of the alerts job; the expiry outcomes as (item, status)."""
    from govern.worker import jobs, run_pass

    outcomes = run_pass(services, [job for job in jobs(services, rotation=None) if job.name == "alerts"])
    return [(o.secret, o.status) for o in outcomes if "expiry:" in o.secret or o.failed]


# --- the pure forecast ------------------------------------------------------------------------------

def test_a_refresh_token_expires_at_the_earlier_of_its_absolute_and_idle_lifetimes():
    day = dt.timedelta(days=1)
    assert refresh_token_expiry(T0, None, lifetime_seconds=90 * 86400, idle_seconds=30 * 86400) == T0 + 30 * day
    # used on day 20: idle now ends on day 50, still before the absolute 90
    assert refresh_token_expiry(T0, T0 + 20 * day, lifetime_seconds=90 * 86400,
                                idle_seconds=30 * 86400) == T0 + 50 * day
    # used on day 80: the absolute lifetime wins
    assert refresh_token_expiry(T0, T0 + 80 * day, lifetime_seconds=90 * 86400,
                                idle_seconds=30 * 86400) == T0 + 90 * day
    assert refresh_token_expiry(T0, None, lifetime_seconds=None, idle_seconds=None) is None


def test_forecast_orders_by_days_left_and_buckets_into_30_60_90():
    items = [ExpiryItem("client_secret", c, "client_secret", T0 + dt.timedelta(days=d), "declared")
             for c, d in (("late", 75), ("soon", 10), ("gone", -2), ("mid", 45), ("far", 200))]
    out = forecast(items, T0)
    assert [f.item.credential for f in out] == ["gone", "soon", "mid", "late", "far"]
    assert [f.days_left for f in out] == [-2, 10, 45, 75, 200] and out[0].expired
    assert [f.item.credential for f in forecast(items, T0, within_days=45)] == ["gone", "soon", "mid"]
    grouped = buckets(forecast(items, T0, within_days=90))
    assert {h: [f.item.credential for f in fs] for h, fs in grouped.items()} == {
        30: ["gone", "soon"], 60: ["mid"], 90: ["late"]}
    # a date means "valid through that day" (UTC)
    assert date_end(dt.date(2026, 3, 1)) == dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


# --- the worker alert, with a controlled clock --------------------------------------------------------

def test_the_worker_alerts_at_the_lead_time_once_and_recovers_after_renewal(expiry_services, clock, runner, tmp_path,
                                                                          receiver):  # noqa: F811 - fixture
    services = expiry_services
    services.notifier = WebhookNotifier(receiver.url, WEBHOOK_SECRET, clock=clock)
    apply(runner, tmp_path, "2026-03-01")  # valid through March 1st: 55.6 days left at T0

    assert alert_pass(services) == []  # beyond the 30-day lead time
    clock.current = dt.datetime(2026, 1, 30, 23, 0, tzinfo=dt.UTC)  # 30.04 days left: not yet
    assert alert_pass(services) == []
    clock.current = dt.datetime(2026, 1, 31, 1, 0, tzinfo=dt.UTC)  # 29.96 days left: alert
    assert alert_pass(services) == [("alert expiry:client_secret:erp-cc:client_secret", "sent")]
    [event] = [e for e in receiver.events() if e["event"] == "alert.expiry"]
    assert event["payload"]["credential"] == "erp-cc" and event["payload"]["kind"] == "client_secret"
    assert event["payload"]["days_left"] == 29 and event["payload"]["lead_days"] == 30
    assert event["payload"]["expires_at"] == "2026-03-02T00:00:00+00:00"
    assert event["payload"]["rotation_scheduled"] is False

    # Still expiring, on later passes and days: no second alert.
    assert alert_pass(services) == []
    clock.advance(days=5)
    assert alert_pass(services) == []
    assert [e["event"] for e in receiver.events()].count("alert.expiry") == 1

    # Renewed: the provider issued a new secret valid for two years, declared in governance.yaml.
    apply(runner, tmp_path, "2028-02-05")
    assert alert_pass(services) == [("alert expiry:client_secret:erp-cc:client_secret", "resolved")]
    assert receiver.events()[-1]["event"] == "alert.resolved"
    assert receiver.events()[-1]["payload"]["alert"] == "expiry:client_secret:erp-cc:client_secret"
    assert alert_pass(services) == []


def test_the_lead_time_is_a_setting(settings, clock, runner, tmp_path):
    from govern.bootstrap import build_services

    services = build_services(settings.with_overrides(expiry_alert_days=60), clock=clock)
    try:
        services.notifier = RecordingNotifier()
        apply(runner, tmp_path, "2026-03-01")
        assert alert_pass(services) == [("alert expiry:client_secret:erp-cc:client_secret", "sent")]
        assert services.notifier.events[0][1]["lead_days"] == 60
    finally:
        services.close()


class RecordingNotifier:
    def __init__(self):
        self.events = []

    def notify(self, event, payload):
        self.events.append((event, payload))


# --- refresh tokens: learned from what govern holds ------------------------------------------------------

def test_a_refresh_tokens_expiry_is_learned_from_its_storage_and_last_use(expiry_services, clock, runner, tmp_path):
    from govern.secrets.service import SecretService
    from govern.store.expiry import read_forecast

    services = expiry_services
    apply(runner, tmp_path, "2026-03-01")
    SecretService(services.sessions, services.secret_store, clock=clock).put_for_credential(
        "crm-rt", "refresh_token", "rt-value-never-shown", principal="svc")
    [rt] = [f for f in read_forecast(services.sessions, clock.now()) if f.item.kind == "refresh_token"]
    assert rt.item.credential == "crm-rt" and rt.item.subject == "principal svc" and rt.item.rotation
    assert rt.item.expires_at == T0 + dt.timedelta(days=30)  # idle lifetime from the storage

    # The broker used it on day 20 (a succeeded refresh in the journal): idle now ends on day 50.
    with session_scope(services.sessions) as s:
        s.add(RefreshJournal(attempt_id="a1", credential="crm-rt", principal="svc", state="succeeded",
                             started_at=T0 + dt.timedelta(days=20), finished_at=T0 + dt.timedelta(days=20)))
        s.add(RefreshJournal(attempt_id="a2", credential="crm-rt", principal="svc", state="failed",
                             started_at=T0 + dt.timedelta(days=25), finished_at=T0 + dt.timedelta(days=25)))
    [rt] = [f for f in read_forecast(services.sessions, clock.now()) if f.item.kind == "refresh_token"]
    assert rt.item.expires_at == T0 + dt.timedelta(days=50)
    # what the forecast carries: names and dates, never the token
    assert "rt-value-never-shown" not in repr(read_forecast(services.sessions, clock.now()))


# --- metrics, dashboard, CLI ----------------------------------------------------------------------------

def test_metrics_show_days_to_expiry(expiry_services, clock, runner, tmp_path):
    from govern.app import create_app

    apply(runner, tmp_path, "2026-03-01")
    client = create_app({"TESTING": True}, services=expiry_services).test_client()
    text = client.get("/metrics").get_data(as_text=True)
    line = re.search(r'^govern_expiry_days\{([^}]*)\} (\S+)$', text, re.M)
    assert line, text
    labels = dict(re.findall(r'(\w+)="([^"]*)"', line.group(1)))
    assert labels == {"kind": "client_secret", "credential": "erp-cc", "subject": "client_secret"}
    assert float(line.group(2)) == 55.625  # 2026-01-05 09:00 to 2026-03-02 00:00
    # the credential page of the console shows the declared expiry
    from govern.store.admins import create_admin
    from tests.admin.conftest import PASSWORD

    create_admin(expiry_services.sessions, "aud", PASSWORD, "auditor")
    sign_in(client, "aud")
    import sqlalchemy as sa

    from govern.store.tables import ExternalCredential

    with expiry_services.sessions() as s:
        cred_id = s.execute(sa.select(ExternalCredential.id).where(ExternalCredential.external_id == "erp-cc")).scalar_one()
    page = client.get(f"/admin/credentials/details/?id={cred_id}").get_data(as_text=True)
    assert "Declared expiry" in page and "2026-03-01" in page
    clock.advance(days=60)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'govern_expiry_days{credential="erp-cc",kind="client_secret",subject="client_secret"} -4.375' in text


def test_the_dashboard_shows_upcoming_expiries(expiry_services, clock, runner, tmp_path):
    from govern.app import create_app
    from govern.store.admins import create_admin
    from tests.admin.conftest import PASSWORD

    apply(runner, tmp_path, "2026-03-01")
    create_admin(expiry_services.sessions, "op", PASSWORD, "operator")
    client = create_app({"TESTING": True}, services=expiry_services).test_client()
    sign_in(client, "op")
    html = client.get("/admin/").get_data(as_text=True)
    section = re.search(r'<div class="gv-card" id="gv-expiring">.*?</div>', html, re.S).group(0)
    counts = dict(re.findall(r'Within (\d+) days <span class="gv-n-expiring-\d+">(\d+)</span>', section))
    assert counts == {"30": "0", "60": "1", "90": "0"}
    row = re.search(r'<tr class="gv-expiry-row"[^>]*data-key="client_secret:erp-cc:client_secret">.*?</tr>',
                    section, re.S)
    assert row and "55 days" in row.group(0) and "no rotation" in row.group(0)

    clock.current = dt.datetime(2026, 2, 20, tzinfo=dt.UTC)  # 10 days left: within 30, marked for attention
    sign_in(client, "op")  # the console session of January has ended
    html = client.get("/admin/").get_data(as_text=True)
    section = re.search(r'<div class="gv-card" id="gv-expiring">.*?</div>', html, re.S).group(0)
    assert dict(re.findall(r'Within (\d+) days <span class="gv-n-expiring-\d+">(\d+)</span>', section))["30"] == "1"
    assert 'gv-expiry-row gv-attention' in section and "Needs attention" in section


def test_govern_expiry_lists_what_expires(runner, tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    apply(runner, tmp_path, (today + dt.timedelta(days=10)).isoformat())
    result = runner.invoke(["expiry", "--json"])
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.output)
    assert item["key"] == "client_secret:erp-cc:client_secret" and item["source"] == "declared"
    assert 10 <= item["days_left"] <= 11 and item["alerting"] is True and item["rotation"] is False
    text = runner.invoke(["expiry"]).output
    assert "erp-cc" in text and "10 days left (alerting)" in text and "no rotation schedule" in text
    assert runner.invoke(["expiry", "--within", "5", "--json"]).output.strip() == "[]"
    assert "nothing expires within 5 days" in runner.invoke(["expiry", "--within", "5"]).output


def test_lifetimes_on_a_credential_without_refresh_tokens_are_refused(runner, tmp_path):
    path = tmp_path / "governance.yaml"
    text = landscape("2026-03-01")
    assert "client_secret_expires: 2026-03-01" in text
    path.write_text(text.replace("client_secret_expires: 2026-03-01", "refresh_token_idle: 30d"))
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 2
    assert "refresh_token_idle describe refresh tokens" in result.output


def test_apply_twice_changes_nothing_and_export_gives_the_keys_back(runner, tmp_path):
    apply(runner, tmp_path, "2026-03-01")
    again = runner.invoke(["apply", "-f", str(tmp_path / "governance.yaml")])
    assert again.exit_code == 0 and "0 created, 0 updated, 0 deleted" in again.output, again.output
    exported = runner.invoke(["export"])
    assert exported.exit_code == 0
    assert "client_secret_expires: '2026-03-01'" in exported.output or \
        "client_secret_expires: 2026-03-01" in exported.output, exported.output
    assert "refresh_token_lifetime: 90d" in exported.output and "refresh_token_idle: 30d" in exported.output
    out = tmp_path / "exported.yaml"
    out.write_text(exported.output)
    back = runner.invoke(["apply", "-f", str(out)])
    assert back.exit_code == 0 and "0 created, 0 updated, 0 deleted" in back.output, back.output


# --- certificates: learned from an imported org ------------------------------------------------------------

def test_an_imported_orgs_certificate_is_forecast_and_alerted(expiry_services, clock, runner, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from govern.store.expiry import read_forecast
    from tests.audit.test_privilege_rules import _app, _pem, _write

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "integration")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(T0 - dt.timedelta(days=300))
            .not_valid_after(T0 + dt.timedelta(days=20)).sign(key, hashes.SHA256()))
    org = tmp_path / "org"
    _write(org, "connectedApps/Jwt_App.connectedApp-meta.xml", _app("Jwt_App", _pem(cert)))
    result = runner.invoke(["import", "salesforce", str(org), "--name", "acme-prod"])
    assert result.exit_code == 0, result.output

    [item] = [f for f in read_forecast(expiry_services.sessions, clock.now()) if f.item.kind == "certificate"]
    assert item.item.credential == "acme-prod/Jwt_App" and item.days_left == 20 and item.item.source == "learned"
    expiry_services.notifier = RecordingNotifier()
    assert alert_pass(expiry_services) == [("alert expiry:certificate:acme-prod/Jwt_App:certificate", "sent")]
    assert "BEGIN" not in json.dumps(expiry_services.notifier.events)  # names and dates, never the certificate
