"""Issue #19: imported orgs are sources that stay (`govern import salesforce DIR --name ORG`, `govern import
list|remove`), every `govern audit` audits each of them and govern's own landscape, and one run is stored once
however many times it is rendered (`govern audit report`)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from govern.audit.engine import run_rules
from govern.audit.model_codec import from_json, to_json
from govern.audit.salesforce.importer import import_directory

HERE = Path(__file__).parent
SHARED = Path("/work/shared/corpus/salesforce")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "governance.yaml"


@pytest.fixture
def shared():
    if not SHARED.is_dir():
        pytest.fail("the shared Salesforce sample /work/shared/corpus/salesforce is missing")
    return SHARED


def _runs(client, auth):
    return client.get("/api/v1/audit/runs", headers=auth).get_json()


def test_an_imported_org_is_audited_by_every_plain_audit_and_listed_by_the_api(services, runner, client, admin_token,
                                                                             shared, tmp_path):
    assert runner.invoke(["apply", "-f", str(EXAMPLE)]).exit_code == 0
    imported = runner.invoke(["import", "salesforce", str(shared), "--name", "acme-prod"])
    assert imported.exit_code == 0, imported.output
    assert imported.output.splitlines()[-1].startswith("source=acme-prod imported=")
    out = tmp_path / "r.json"
    result = runner.invoke(["audit", "--out", str(out)])  # no --source: every source
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [s["name"] for s in report["sources"]] == ["govern", "acme-prod"]
    by_source = {}
    for f in report["findings"]:
        by_source.setdefault(f["source"], set()).add(f["rule_id"])
    assert "GOV-ACCESS-001" in by_source["acme-prod"] and "GOV-ACCESS-001" in by_source["govern"]
    # the org's findings point at its metadata files; govern's at its landscape
    assert all(f["location"]["file"].endswith(".xml") or "." in f["location"]["file"]
               for f in report["findings"] if f["source"] == "acme-prod" and f["location"])

    auth = {"Authorization": f"Bearer {admin_token}"}
    page = client.get("/api/v1/findings?source=acme-prod&limit=500", headers=auth).get_json()
    assert page["total"] == sum(1 for f in report["findings"] if f["source"] == "acme-prod") > 0
    assert {i["source"] for i in page["items"]} == {"acme-prod"}
    both = client.get("/api/v1/findings?limit=500", headers=auth).get_json()
    assert {i["source"] for i in both["items"]} == {"govern", "acme-prod"}
    assert _runs(client, auth)["items"][0]["sources"] == ["govern", "acme-prod"]

    # --source picks one; the other source's findings stay as they were
    assert runner.invoke(["audit", "--source", "govern", "--out", str(tmp_path / "g.json")]).exit_code == 0
    again = client.get("/api/v1/findings?source=acme-prod&status=open&limit=500", headers=auth).get_json()
    assert again["total"] == page["total"]


def test_import_list_replace_and_remove(services, runner, client, admin_token, tmp_path):
    corpus = HERE / "corpus"
    assert runner.invoke(["import", "salesforce", str(corpus / "dx"), "--name", "org-a"]).exit_code == 0
    assert runner.invoke(["import", "salesforce", str(corpus / "mdapi")]).exit_code == 0  # named after the directory
    listed = json.loads(runner.invoke(["import", "list", "--json"]).output)
    assert [(r["name"], r["kind"]) for r in listed] == [("mdapi", "salesforce"), ("org-a", "salesforce")]
    first = next(r for r in listed if r["name"] == "org-a")
    assert first["files_imported"] > 0 and first["directory"] == str((corpus / "dx").resolve())
    assert "org-a\tsalesforce" in runner.invoke(["import", "list"]).output

    # a new import of the same name replaces the old one
    assert runner.invoke(["import", "salesforce", str(corpus / "mdapi"), "--name", "org-a"]).exit_code == 0
    listed = json.loads(runner.invoke(["import", "list", "--json"]).output)
    assert len(listed) == 2 and next(r for r in listed if r["name"] == "org-a")["directory"].endswith("mdapi")

    assert runner.invoke(["audit", "--out", str(tmp_path / "r.json")]).exit_code == 0
    auth = {"Authorization": f"Bearer {admin_token}"}
    assert client.get("/api/v1/findings?source=org-a", headers=auth).get_json()["total"] > 0
    removed = runner.invoke(["import", "remove", "org-a"])
    assert removed.exit_code == 0 and removed.output.startswith("removed org-a and its ")
    assert client.get("/api/v1/findings?source=org-a", headers=auth).get_json()["total"] == 0
    assert [r["name"] for r in json.loads(runner.invoke(["import", "list", "--json"]).output)] == ["mdapi"]

    missing = runner.invoke(["import", "remove", "org-a"])
    assert missing.exit_code == 2 and missing.output == "error: no source named 'org-a'; the sources are: govern, mdapi\n"
    for bad in ("govern", "../x", ""):
        r = runner.invoke(["import", "salesforce", str(corpus / "dx"), "--name", bad])
        assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.splitlines()) == 1, r.output


def test_kept_model_finds_what_the_directory_finds(tmp_path):
    """The model kept in the database (secrets replaced by their kind) yields the same findings as the files."""
    import datetime as dt

    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    for directory in (HERE / "corpus", SHARED):
        if not directory.is_dir():
            continue
        fresh = import_directory(directory, now).model
        kept = from_json(json.loads(json.dumps(to_json(import_directory(directory, now).model))), now)

        def shape(model):
            return sorted((f.rule_id, f.subject, f.message, json.dumps(f.evidence, sort_keys=True, default=str),
                           f.location) for f in run_rules(model))

        assert shape(kept) == shape(fresh)


def test_four_renderings_leave_one_run(services, runner, client, admin_token, tmp_path):
    assert runner.invoke(["apply", "-f", str(EXAMPLE)]).exit_code == 0
    auth = {"Authorization": f"Bearer {admin_token}"}
    sarif = tmp_path / "r.sarif"
    assert runner.invoke(["audit", "--format", "sarif", "--out", str(sarif)]).exit_code == 0
    run_id = _runs(client, auth)["items"][0]["id"]
    texts = {}
    for fmt in ("html", "json", "csv", "sarif"):
        out = tmp_path / f"again.{fmt}"
        result = runner.invoke(["audit", "report", "--format", fmt, "-o", str(out)])
        assert result.exit_code == 0, result.output
        texts[fmt] = out.read_text()
    assert _runs(client, auth)["total"] == 1
    # the stored run renders as the audit rendered it
    assert json.loads(texts["sarif"]) == json.loads(sarif.read_text())
    report = json.loads(texts["json"])
    assert report["run"]["id"] == run_id
    rows = list(csv.DictReader(io.StringIO(texts["csv"])))
    assert len(rows) == len(report["findings"]) > 0 and "<html" in texts["html"].lower()
    by_id = runner.invoke(["audit", "report", str(run_id), "--format", "json"])
    assert json.loads(by_id.output) == report
    assert _runs(client, auth)["total"] == 1
    nope = runner.invoke(["audit", "report", "999"])
    assert nope.exit_code == 2 and nope.output == "error: no audit run 999 with a stored report\n"


def test_report_before_any_run_is_one_line(services, runner):
    result = runner.invoke(["audit", "report"])
    assert result.exit_code == 2 and result.output.startswith("error: no audit run") and \
        len(result.output.splitlines()) == 1


def test_console_findings_list_shows_the_source(services, runner, client, tmp_path):
    from tests.admin.conftest import sign_in
    from govern.store.admins import create_admin

    create_admin(services.sessions, "auditor-user", "correct horse battery staple", "auditor")
    assert runner.invoke(["import", "salesforce", str(HERE / "corpus"), "--name", "org-b"]).exit_code == 0
    assert runner.invoke(["audit", "--out", str(tmp_path / "r.json")]).exit_code == 0
    sign_in(client, "auditor-user", "correct horse battery staple")
    page = client.get("/admin/findings/?sort=0").get_data(as_text=True)
    assert "Source" in page and "org-b" in page


def test_html_report_shows_each_finding_once_by_source_file_and_subject(services, runner, shared, tmp_path,
                                                                        monkeypatch):
    import re

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    assert runner.invoke(["apply", "-f", "examples/governance.yaml"]).exit_code == 0
    assert runner.invoke(["import", "salesforce", str(shared), "--name", "acme-prod"]).exit_code == 0
    out = tmp_path / "r.json"
    assert runner.invoke(["audit", "--out", str(out)]).exit_code == 0
    report = json.loads(out.read_text())
    html = runner.invoke(["audit", "report", "--format", "html"]).output
    # each finding once: one row per fingerprint, and nothing else repeats a row
    rows = re.findall(r'<tr id="f-([0-9a-f]+)">', html)
    assert sorted(rows) == sorted(f["fingerprint"] for f in report["findings"])
    # grouped: a section per source, the files under it, the subjects under each file
    assert "<h2>Source govern</h2>" in html and "<h2>Source acme-prod</h2>" in html
    assert html.index("<h2>Source govern</h2>") < html.index("<h3>File <code>examples/governance.yaml</code></h3>") \
        < html.index("<h2>Source acme-prod</h2>")
    a_file = next(f["location"]["file"] for f in report["findings"] if f["source"] == "acme-prod")
    assert f"<h3>File <code>{a_file}</code></h3>" in html
    user = next(f["subject"] for f in report["findings"] if f["subject_kind"] == "integration_user")
    assert f'<h4 id="user-{user}">Integration user {user}</h4>' in html
    assert '<h4 id="permission_set-crm-admin-backfill">Permission set crm-admin-backfill</h4>' in html
    # the summary: sources with the files imported and skipped, counts by rule and severity
    src = next(s for s in report["sources"] if s["name"] == "acme-prod")
    assert f'{src["files_imported"]} imported, {src["files_skipped"]} skipped, {src["files_failed"]} failed' in html
    assert src["files_skipped"] == 2 and "<td><code>README.md</code></td><td>skipped</td>" in html
    by_rule = report["summary"]["by_rule"]
    assert sum(n for sev in by_rule.values() for n in sev.values()) == len(report["findings"])
    assert report["summary"]["files"] == {"imported": src["files_imported"], "skipped": 2, "failed": 0}
    n = by_rule["GOV-ACCESS-004"]
    assert f"<td>{sum(n.values())}</td></tr>" in html.split("<code>GOV-ACCESS-004</code>", 1)[1].split("</tr>", 1)[0] \
        + "</tr>"
