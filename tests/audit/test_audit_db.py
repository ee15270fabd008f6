"""The audit on govern's own landscape in the database: right-sizing replay, reports, CLI gate, trend,
suppressions and the findings API."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import yaml

from govern.store.db import session_scope
from govern.store.tables import Decision, IntegrationUser
from tests.audit.schema_check import errors as schema_errors
from tests.factories import make_landscape

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"


def _decision(user, nc, method, path, allowed=True, at=None, scopes=("orders.read",), api="REST", principal="default"):
    h = uuid.uuid4().hex + uuid.uuid4().hex
    return Decision(at=at or dt.datetime.now(dt.UTC) - dt.timedelta(days=1), correlation_id=h[:16],
                    integration_user=user, action="proxy", named_credential=nc, principal=principal, method=method,
                    path=path, api_type=api, scopes_requested=list(scopes), scopes_granted=list(scopes),
                    allowed=allowed, rules=[], prev_hash=h[64:] or h[:64], hash=h[:64])


def _landscape(services):
    make_landscape(services, user="order-sync", ps_scopes=("orders.read", "orders.write"),
                   methods=("GET", "POST", "DELETE"), paths=("/orders/*", "/invoices/**"), api_types=("REST", "SOAP"))
    with session_scope(services.sessions) as s:
        u = s.query(IntegrationUser).filter_by(external_id="order-sync").one()
        u.created_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=120)
        for i in range(40):
            s.add(_decision("order-sync", "erp-api", "GET", f"/orders/{i}"))
        s.add(_decision("order-sync", "erp-api", "DELETE", "/admin/x", allowed=False))
        # the log began before the window, so the window's absence of use is evidence
        s.add(_decision(None, "erp-api", "GET", "/", allowed=False,
                        at=dt.datetime.now(dt.UTC) - dt.timedelta(days=60)))


def test_rightsizing_replay_denies_nothing_used_and_removes_the_unused(services, runner, tmp_path):
    _landscape(services)
    out, rec = tmp_path / "r.json", tmp_path / "rightsized.yaml"
    result = runner.invoke(["audit", "--format", "json", "--out", str(out), "--recommend", str(rec)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    r = next(x for x in report["rightsizing"] if x["user"] == "order-sync")
    assert r["judged"] and r["proof"] == {"replayed_requests": 40, "replayed_patterns": 40, "would_deny": 0,
                                          "would_deny_patterns": 0}
    doc = yaml.safe_load(rec.read_text())
    ps = doc["permission_sets"][0]
    assert ps["id"] == "order-sync-ps-rightsized"
    assert ps["grants"] == [{"named_credential": "erp-api", "principal": "default", "methods": ["GET"],
                             "paths": ["/orders/*"]}]
    assert ps["scopes"] == ["orders.read"] and ps["api_types"] == ["REST"]
    assert doc["integration_users"][0]["permission_sets"] == ["order-sync-ps-rightsized"]
    rules = {f["rule_id"] for f in report["findings"]}
    assert {"GOV-USAGE-002", "GOV-USAGE-003", "GOV-API-001"} <= rules
    # the removed parts are exactly what was never used
    unused = {(u["kind"], json.dumps(u["detail"].get("unused") or u["detail"].get("scope") or
                                     u["detail"].get("api_type"))) for u in r["unused"]}
    assert ("methods", json.dumps(["DELETE", "POST"])) in unused and ("paths", json.dumps(["/invoices/**"])) in unused
    assert ("scope", json.dumps("orders.write")) in unused and ("api_type", json.dumps("SOAP")) in unused
    # and the recommendation really removes them: the replay matcher denies what was never used
    from govern.audit.model import RequestPattern
    from govern.audit.rightsizing import permits

    def allowed(method, path, scopes=("orders.read",), api="REST"):
        return permits(doc["permission_sets"], doc["integration_users"][0]["scopes"],
                       RequestPattern("erp-api", method, path, None, api, scopes, 1))

    assert allowed("GET", "/orders/7")
    assert not allowed("DELETE", "/orders/7") and not allowed("GET", "/invoices/1/lines")
    assert not allowed("GET", "/orders/7", scopes=("orders.write",)) and not allowed("GET", "/orders/7", api="SOAP")


def test_young_users_are_not_judged_on_unused_grants(services, runner, tmp_path):
    make_landscape(services, user="new-sync", methods=("GET", "DELETE"))  # created now
    out = tmp_path / "r.json"
    assert runner.invoke(["audit", "--out", str(out)]).exit_code == 0
    report = json.loads(out.read_text())
    rec = next(x for x in report["rightsizing"] if x["user"] == "new-sync")
    assert not rec["judged"] and "younger" in rec["reason"]
    assert not any(f["rule_id"].startswith("GOV-USAGE-00") and f["evidence"].get("user") == "new-sync"
                   for f in report["findings"])


def test_json_report_matches_documented_schema(services, runner, tmp_path):
    _landscape(services)
    out = tmp_path / "r.json"
    assert runner.invoke(["audit", "--out", str(out)]).exit_code == 0
    schema = json.loads((ROOT / "docs" / "audit-report.schema.json").read_text())
    assert schema_errors(schema, json.loads(out.read_text())) == []
    assert schema_errors(schema, {"schema": "nope"})  # the checker can fail


def test_sarif_structure_and_salesforce_locations(services, runner, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "r.sarif"
    result = runner.invoke(["audit", "--source", "salesforce", str(CORPUS), "--format", "sarif", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0" and "sarif-2.1.0" in sarif["$schema"]
    run = sarif["runs"][0]
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert len(ids) == len(set(ids)) >= 30
    assert run["results"]
    for res in run["results"]:
        assert res["ruleId"] in ids and ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] in ("error", "warning", "note", "none") and res["message"]["text"]
        phys = res["locations"][0]["physicalLocation"]
        art = phys["artifactLocation"]
        # the corpus is inside the working directory: its files are under %SRCROOT%, never an absolute path
        assert art["uriBaseId"] == "%SRCROOT%" and not Path(art["uri"]).is_absolute()
        assert (Path.cwd() / art["uri"]).is_file() and phys["region"]["startLine"] >= 1


def test_fail_on_gate_and_bad_arguments(services, runner, tmp_path):
    _landscape(services)
    assert runner.invoke(["audit", "--source", "salesforce", str(CORPUS), "--fail-on", "critical",
                          "--out", str(tmp_path / "x")]).exit_code == 1
    # govern's own clean-ish landscape: no critical finding
    assert runner.invoke(["audit", "--fail-on", "critical", "--out", str(tmp_path / "y")]).exit_code == 0
    bad = runner.invoke(["audit", "--window", "soon"])
    assert bad.exit_code == 2 and "--window" in bad.output
    assert runner.invoke(["audit", "--format", "pdf"]).exit_code == 2
    no_dir = runner.invoke(["audit", "--source", "salesforce"])  # no org imported under that name
    assert no_dir.exit_code == 2 and no_dir.output.strip() == "error: no source named 'salesforce'; the sources are: govern"
    missing = runner.invoke(["audit", "--source", "salesforce", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "is not a directory" in missing.output


def test_html_is_self_contained(services, runner, tmp_path):
    _landscape(services)
    out = tmp_path / "r.html"
    assert runner.invoke(["audit", "--format", "html", "--out", str(out)]).exit_code == 0
    html = out.read_text()
    assert "<svg" in html and "<style>" in html and "Integration user order-sync" in html
    assert "http://" not in html.replace('http://www.w3.org', '') and "<script" not in html
    assert "src=" not in html and "<link" not in html


def test_trend_and_suppression_expiry_reopens(services, runner, tmp_path):
    from govern.store.audit_runs import add_suppression, record_run
    from govern.audit.engine import run_rules
    from govern.audit.salesforce.importer import import_directory

    now = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    findings = lambda: run_rules(import_directory(CORPUS, now).model)  # noqa: E731
    with session_scope(services.sessions) as s:
        first = record_run(s, "salesforce", findings(), now)
        assert len(first.new) > 10 and first.resolved == [] and first.reopened == []
        add_suppression(s, "GOV-NET-003", "Bad_App", "sec@x", "accepted for the pilot", "SEC-1",
                        now.date() + dt.timedelta(days=7), now.date())
    with session_scope(services.sessions) as s:
        fs = findings()
        gone = next(f for f in fs if f.rule_id == "GOV-OAUTH-006")
        second = record_run(s, "salesforce", [f for f in fs if f is not gone], now)
        assert second.new == [] and second.resolved == [gone.fingerprint] and second.counts["suppressed"] == 1
    later = now + dt.timedelta(days=30)  # the suppression has expired and the fix was reverted
    with session_scope(services.sessions) as s:
        third = record_run(s, "salesforce", findings(), later)
        sup = next(f for f in findings() if f.rule_id == "GOV-NET-003")
        assert set(third.reopened) == {gone.fingerprint, sup.fingerprint}


def test_suppress_cli(services, runner):
    ok = runner.invoke(["audit", "suppress", "GOV-NET-003", "Bad_*", "--owner", "sec@x", "--justification", "pilot",
                        "--ticket", "SEC-2", "--until", "2099-01-01"])
    assert ok.exit_code == 0, ok.output
    listed = runner.invoke(["audit", "suppressions"])
    assert "GOV-NET-003\tBad_*\tsec@x\tSEC-2\t2099-01-01\tactive" in listed.output
    bad = runner.invoke(["audit", "suppress", "GOV-NOPE-1", "x", "--owner", "a", "--justification", "b", "--ticket",
                         "c", "--until", "2099-01-01"])
    assert bad.exit_code == 2 and "unknown rule" in bad.output


def test_import_salesforce_cli(services, runner, tmp_path):
    result = runner.invoke(["import", "salesforce", str(CORPUS.parent / "broken")])
    assert result.exit_code == 0
    assert "source=broken imported=1 skipped=0 failed=2" in result.output
    assert "Broken.permissionset-meta.xml:4" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(["import", "salesforce", str(empty)]).exit_code == 2


def test_findings_api(services, runner, client, admin_token, tmp_path):
    assert runner.invoke(["import", "salesforce", str(CORPUS), "--name", "salesforce"]).exit_code == 0
    assert runner.invoke(["audit", "--source", "salesforce", "--out", str(tmp_path / "r.json")]).exit_code == 0
    auth = {"Authorization": f"Bearer {admin_token}"}
    assert client.get("/api/v1/findings").status_code == 401
    page = client.get("/api/v1/findings?severity=critical&limit=2", headers=auth).get_json()
    assert page["total"] >= 3 and len(page["items"]) == 2
    assert all(i["severity"] == "critical" and i["source"] == "salesforce" for i in page["items"])
    one = client.get(f"/api/v1/findings/{page['items'][0]['id']}", headers=auth).get_json()
    assert one["fingerprint"] == page["items"][0]["fingerprint"] and one["location"]["line"] >= 1
    assert client.get("/api/v1/findings/999999", headers=auth).status_code == 404
    bad = client.get("/api/v1/findings?severity=urgent", headers=auth)
    assert bad.status_code == 422 and bad.content_type.startswith("application/problem+json")
    runs = client.get("/api/v1/audit/runs", headers=auth).get_json()
    assert runs["items"][0]["source"] == "salesforce"
    rule = client.get("/api/v1/findings?rule=GOV-NET-003&subject=Bad_App", headers=auth).get_json()
    assert rule["total"] == 1


CANARIES = ("hunter2-in-metadata", "sk_live_0123456789abcdefXYZ", "A1B2C3D4E5F6EXAMPLESECRET", "abcdefghijklmnop")


def test_metadata_secrets_never_reach_reports_database_or_console(services, runner, tmp_path):
    import sqlalchemy as sa

    outputs = []
    for fmt in ("json", "csv", "sarif", "html"):
        out = tmp_path / f"r.{fmt}"
        result = runner.invoke(["audit", "--source", "salesforce", str(CORPUS), "--format", fmt, "--out", str(out)])
        outputs += [out.read_text(), result.output]
    outputs.append(runner.invoke(["import", "salesforce", str(CORPUS)]).output)
    result = runner.invoke(["audit", "--format", "sarif"])  # the kept org, audited from the database
    outputs.append(result.output)
    assert result.exit_code == 0 and "GOV-SECRET-001" in result.output
    for fmt in ("json", "csv", "sarif", "html"):
        outputs.append(runner.invoke(["audit", "report", "--format", fmt]).output)
    with services.engine.connect() as conn:
        for table in ("finding", "audit_run", "salesforce_import"):
            outputs += [repr(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    text = "\n".join(outputs)
    assert "GOV-SECRET-001" in text  # the secrets were found ...
    for canary in CANARIES:
        assert canary not in text  # ... and never repeated
