"""Issue #17: `--json` on every command that lists or reports a status. One JSON document on stdout (nothing
else there, no progress bar), stable keys, `[]` for an empty list. Each run is a real `govern` subprocess on an
instance made by `govern init` + `govern apply -f examples/governance.yaml`."""
from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest

from govern.store.db import script_heads
from tests.cli_instance import copy_instance, govern

LISTS = (["secrets", "status"], ["dlq", "list"], ["audit", "suppressions"], ["rotate", "history"], ["log", "show"],
         ["expiry"])


@pytest.fixture
def instance(tmp_path, cli_instance_template):
    return copy_instance(cli_instance_template, tmp_path)


def _json(args, cwd, ok=(0,), **kw):
    proc = govern([*args, "--json"], cwd, **kw)
    assert proc.returncode in ok, (args, proc.stdout, proc.stderr)
    assert "\x1b[" not in proc.stdout, args  # no colour, no progress bar
    return json.loads(proc.stdout)  # the whole of stdout is one document


def test_empty_lists_are_an_empty_json_array(instance):
    for args in LISTS:
        assert _json(args, instance) == [], args
    assert _json(["rotate", "--due"], instance) == {"dry_run": True, "items": []}


def test_status_reports_carry_their_fields(instance):
    heads = sorted(script_heads() or ())
    assert len(heads) == 1  # one line of migrations
    assert _json(["db", "current"], instance) == {"current": heads, "head": heads, "up_to_date": True}
    doctor = _json(["doctor"], instance)
    assert doctor["ok"] is True
    assert {c["name"] for c in doctor["checks"]} >= {"instance", "database", "secret store", "policies"}
    assert all(set(c) == {"name", "ok", "detail", "fix"} and c["ok"] for c in doctor["checks"])
    policies = _json(["policies", "validate"], instance)
    assert policies["valid"] is True and policies["problems"] == [] and len(policies["policies"]) == 8
    assert all(set(p) == {"id", "file", "ok", "errors"} for p in policies["policies"])
    verify = _json(["log", "verify"], instance)
    assert verify == {"intact": True, "records": 0, "checkpoints": 0, "problems": [], "store_down": [],
                      "unprotected": []}


def test_doctor_json_on_a_broken_instance_says_what_failed_and_exits_1(tmp_path):
    report = _json(["doctor"], tmp_path, ok=(1,))  # no instance in tmp_path/instance
    assert report["ok"] is False
    failed = {c["name"]: c for c in report["checks"] if not c["ok"]}
    assert "instance" in failed and "govern init" in failed["instance"]["fix"]


def test_lists_carry_their_fields_and_never_a_secret(instance):
    canary = "canary-" + secrets.token_urlsafe(16)
    put = govern(["secrets", "put", "--user", "sandbox-app", "--field", "client_secret"], instance, input=canary)
    assert put.returncode == 0, put.stderr
    suppress = govern(["audit", "suppress", "GOV-ACCESS-001", "integration_user:legacy-*", "--owner", "sec-team",
                       "--justification", "being retired", "--ticket", "SEC-42", "--until", "2099-01-31"], instance)
    assert suppress.returncode == 0, suppress.stderr
    ref = "credential/sandbox-client-credentials/client_secret"
    assert govern(["secrets", "put", "sandbox-client-credentials", "--field", "client_secret"], instance,
                  input="upstream-" + canary).returncode == 0
    rotated = _json(["rotate", ref, "--commit"], instance)
    assert rotated["dry_run"] is False
    assert [(i["secret"], i["status"], i["failed"]) for i in rotated["items"]] == [(ref, "awaiting_confirmation", False)]
    run_id = rotated["items"][0]["run_id"]
    _token_call(instance, "sandbox-app", canary)

    outputs = {}
    status = outputs["secrets"] = _json(["secrets", "status"], instance)
    assert {s["ref"] for s in status} == {"integration_user/sandbox-app/client_secret", ref}
    assert all(set(s) == {"ref", "owner_kind", "owner", "principal", "field", "store", "version", "set_at", "status"}
               for s in status)
    suppressions = outputs["suppressions"] = _json(["audit", "suppressions"], instance)
    assert [(s["rule"], s["subject"], s["owner"], s["ticket"], s["expires_at"], s["state"]) for s in suppressions] == [
        ("GOV-ACCESS-001", "integration_user:legacy-*", "sec-team", "SEC-42", "2099-01-31", "active")]
    assert suppressions[0]["id"] and suppressions[0]["justification"] == "being retired"
    history = outputs["history"] = _json(["rotate", "history"], instance)
    assert [(r["id"], r["secret"], r["state"]) for r in history] == [(run_id, ref, "awaiting_confirmation")]
    assert [s["step"] for s in history[0]["steps"]][:1] == ["create_pending"]
    assert dt.datetime.fromisoformat(history[0]["started_at"]).tzinfo is not None
    assert "T" in history[0]["started_at"]  # ISO 8601, like every other time in these documents
    show = outputs["show"] = _json(["log", "show"], instance)
    assert [(d["action"], d["outcome"], d["integration_user"]) for d in show] == [("oauth_token", "allow", "sandbox-app")]
    from govern.store.decisions import FIELDS

    assert set(show[0]) == set(FIELDS) and show[0]["id"] and show[0]["at"] and show[0]["correlation_id"]
    verify = outputs["verify"] = _json(["log", "verify"], instance)
    assert verify["intact"] is True and verify["records"] == 1
    assert _json(["dlq", "list"], instance) == []
    assert canary not in json.dumps(outputs)


def _token_call(instance, client_id: str, client_secret: str) -> None:
    """One client-credentials token request to govern's /oauth/token, through the app built on this instance."""
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import load_settings

    svc = build_services(load_settings({"GOVERN_HOME": str(instance / "instance")}))
    try:
        client = create_app({"TESTING": True}, services=svc).test_client()
        answer = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                             auth=(client_id, client_secret))
        assert answer.status_code == 200, answer.get_data(as_text=True)
    finally:
        svc.close()
