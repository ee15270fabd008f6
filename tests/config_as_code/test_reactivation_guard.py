"""Offboarding is not undone by re-applying an old file: a retired integration user stays retired unless the
caller names it (`govern apply --reactivate USER`, `POST /api/v1/apply?reactivate=USER`, the console's
Reactivate). Through the CLI and the HTTP API, on the landscape `govern apply` wrote."""
from __future__ import annotations

import pytest

from tests.config_as_code.test_apply_cli import write
from tests.config_as_code.test_validate import BASE

pytestmark = pytest.mark.db


def _status(services, user: str) -> str:
    from govern.store.landscape import load_current

    with services.sessions() as session:
        return load_current(session).specs["integration_user"][user]["status"]


def test_offboarded_user_is_not_brought_back_by_the_old_file(runner, tmp_path, services):
    path = write(tmp_path, BASE)
    assert runner.invoke(["apply", "-f", path]).exit_code == 0
    result = runner.invoke(["offboard", "order-sync", "--commit"])
    assert result.exit_code == 0, result.output
    assert _status(services, "order-sync") == "retired"

    again = runner.invoke(["apply", "-f", path])
    assert again.exit_code == 2
    assert (f"{path}:17: integration_users.order-sync.status: integration user order-sync is retired (offboarded); "
            "this would make it active again") in again.output
    assert "nothing was applied" in again.output
    assert _status(services, "order-sync") == "retired"

    dry = runner.invoke(["apply", "-f", path, "--dry-run"])  # a dry run says the same
    assert dry.exit_code == 2 and "--reactivate order-sync" in dry.output

    back = runner.invoke(["apply", "-f", path, "--reactivate", "order-sync"])
    assert back.exit_code == 0, back.output
    assert "~ update integration_user order-sync (status)" in back.output
    assert _status(services, "order-sync") == "active"


def test_a_file_that_keeps_the_user_retired_applies(runner, tmp_path, services):
    retired = BASE.replace("  - id: order-sync\n", "  - id: order-sync\n    status: retired\n")
    assert runner.invoke(["apply", "-f", write(tmp_path, retired)]).exit_code == 0
    changed = retired.replace("scopes: [orders.read]\n    permission_sets", "scopes: []\n    permission_sets")
    result = runner.invoke(["apply", "-f", write(tmp_path, changed)])
    assert result.exit_code == 0, result.output
    assert _status(services, "order-sync") == "retired"


def test_the_api_refuses_with_a_stable_code_and_applies_when_confirmed(runner, tmp_path, services, app, admin_token):
    retired = BASE.replace("  - id: order-sync\n", "  - id: order-sync\n    status: retired\n")
    assert runner.invoke(["apply", "-f", write(tmp_path, retired)]).exit_code == 0
    client, headers = app.test_client(), {"Authorization": f"Bearer {admin_token}",
                                          "Content-Type": "application/yaml"}
    refused = client.post("/api/v1/apply", data=BASE, headers=headers)
    assert refused.status_code == 422 and refused.mimetype == "application/problem+json"
    problem = refused.get_json()
    assert problem["code"] == "validation_failed"
    assert [e["path"] for e in problem["errors"]] == ["integration_users.order-sync.status"]
    assert _status(services, "order-sync") == "retired"
    confirmed = client.post("/api/v1/apply?reactivate=order-sync", data=BASE, headers=headers)
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    assert _status(services, "order-sync") == "active"
