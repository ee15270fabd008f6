from __future__ import annotations

import json

from tests.factories import make_landscape


def test_contract_export_markdown_and_json(runner, services, tmp_path):
    make_landscape(services, maintenance_windows=[{"day": "sun", "start": "02:00", "end": "04:00"}],
                   daily_api_budget=5000)
    r = runner.invoke(["contract", "export", "erp", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "erp.json").read_text())
    assert data["endpoints"][0]["named_credential"] == "erp-api"
    assert data["authentication"][0]["protocol"] == "oauth2_client_credentials"
    assert data["rate_limits"]["daily_api_budget"] == 5000
    assert data["escalation"]["escalation_contact"] == "oncall@example.com"
    md = (tmp_path / "erp.md").read_text()
    for heading in ("## Endpoints", "## Authentication", "## Rate limits", "## SLA", "## Error codes",
                    "## Versioning policy", "## Escalation", "## Request and response schemas"):
        assert heading in md
    assert "sun 02:00–04:00" in md
    assert "s3cret" not in md and "s3cret" not in json.dumps(data)


def test_unknown_system_is_one_line_exit_2(runner):
    r = runner.invoke(["contract", "export", "nope"])
    assert r.exit_code == 2
    assert r.output.strip() == "error: unknown system 'nope'"
