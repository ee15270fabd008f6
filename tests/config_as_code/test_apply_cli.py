"""`govern apply` and `govern export` end to end through the CLI, on the test database."""
import re

import pytest

from tests.config_as_code.conftest import EXAMPLE
from tests.config_as_code.test_validate import BASE


def plan_lines(output: str, created=0, updated=0, deleted=0) -> list[str]:
    """The output of a real apply without its last line, which must be the `applied:` summary."""
    lines = output.strip().splitlines()
    assert re.fullmatch(rf"applied: {created} created, {updated} updated, {deleted} deleted in \d+\.\d s", lines[-1]), lines
    return lines[:-1]


def write(tmp_path, text, name="g.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_apply_twice_second_plan_has_no_changes(runner, dump):
    first = runner.invoke(["apply", "-f", str(EXAMPLE)])
    assert first.exit_code == 0, first.output
    assert "+ create integration_user erp-order-sync" in first.output
    created = int(re.fullmatch(r"plan: (\d+) to create, 0 to update, 0 unchanged, 0 to delete",
                               first.output.strip().splitlines()[-2]).group(1))
    plan_lines(first.output, created=created)
    rows = dump()
    assert len(rows["integration_user"]) >= 8 and len(rows["permission_set"]) >= 6 and len(rows["system"]) >= 5
    second = runner.invoke(["apply", "-f", str(EXAMPLE)])
    assert second.exit_code == 0
    assert plan_lines(second.output) == [f"plan: 0 to create, 0 to update, {created} unchanged, 0 to delete"]
    assert dump() == rows


def test_dry_run_writes_nothing(runner, dump):
    before = dump()
    result = runner.invoke(["apply", "-f", str(EXAMPLE), "--dry-run"])
    assert result.exit_code == 0
    assert "+ create system salesforce-prod" in result.output and "dry run" in result.output
    assert dump() == before


def test_update_shows_changed_fields(runner, tmp_path):
    assert runner.invoke(["apply", "-f", write(tmp_path, BASE)]).exit_code == 0
    changed = BASE.replace("  - id: erp\n", "  - id: erp\n    contract: {owner: erp@example.com}\n")
    result = runner.invoke(["apply", "-f", write(tmp_path, changed)])
    assert plan_lines(result.output, updated=1) == ["~ update system erp (owner)",
                                                   "plan: 0 to create, 1 to update, 4 unchanged, 0 to delete"]


def test_child_rows_change(runner, tmp_path, services):
    from govern.landscape import export_document

    assert runner.invoke(["apply", "-f", write(tmp_path, BASE)]).exit_code == 0
    changed = BASE.replace("principals: [{name: default}]", "principals: [{name: default}, {name: second}]") \
        .replace("        principal: default\n", "        principal: second\n        methods: [GET]\n") \
        .replace("permission_sets: [orders]", "permission_sets: [{permission_set: orders, until: 2030-01-01}]")
    result = runner.invoke(["apply", "-f", write(tmp_path, changed)])
    assert "~ update credential erp-cc (principals)" in result.output
    assert "~ update permission_set orders (grants)" in result.output
    assert "~ update integration_user order-sync (permission_sets)" in result.output
    exported = export_document(services.sessions)
    assert "until: '2030-01-01'" in exported or "until: 2030-01-01" in exported
    assert "principal: second" in exported


def test_prune_deletes_what_the_file_does_not_declare(runner, tmp_path, dump):
    assert runner.invoke(["apply", "-f", write(tmp_path, BASE)]).exit_code == 0
    smaller = BASE.split("integration_users:")[0]
    without_prune = runner.invoke(["apply", "-f", write(tmp_path, smaller)])
    assert plan_lines(without_prune.output)[-1] == "plan: 0 to create, 0 to update, 5 unchanged, 0 to delete"
    result = runner.invoke(["apply", "-f", write(tmp_path, smaller), "--prune"])
    assert result.exit_code == 0, result.output
    assert plan_lines(result.output, deleted=2) == [
        "- delete permission_set orders", "- delete integration_user order-sync",
        "plan: 0 to create, 0 to update, 3 unchanged, 2 to delete"]
    rows = dump()
    assert rows["integration_user"] == [] and rows["permission_set"] == [] and rows["assignment"] == []
    assert rows["permission_grant"] == []


def test_prune_refuses_to_delete_an_entity_with_secrets(runner, tmp_path, services, dump):
    from govern.store.db import session_scope
    from govern.store.tables import SecretRef

    assert runner.invoke(["apply", "-f", write(tmp_path, BASE)]).exit_code == 0
    with session_scope(services.sessions) as s:
        s.add(SecretRef(external_id="credential/erp-cc/principal/default/client_secret", owner_kind="credential",
                        owner="erp-cc", principal="default", field="client_secret", path="credential/erp-cc/x"))
    before = dump()
    result = runner.invoke(["apply", "-f", write(tmp_path, "apiVersion: govern/v1\n"), "--prune"])
    assert result.exit_code == 2
    assert ("credentials.erp-cc: credential erp-cc would be deleted, but its secret "
            "credential/erp-cc/principal/default/client_secret is still stored") in result.output
    assert dump() == before


def test_stdin(runner):
    result = runner.invoke(["apply", "-f", "-", "--dry-run"], input=BASE)
    assert result.exit_code == 0 and "+ create system erp" in result.output


def test_export_round_trip_on_the_example(runner, tmp_path):
    assert runner.invoke(["apply", "-f", str(EXAMPLE)]).exit_code == 0
    out = tmp_path / "export.yaml"
    assert runner.invoke(["export", "-o", str(out)]).exit_code == 0
    text = out.read_text()
    assert "apiVersion: govern/v1" in text and "erp-order-sync" in text
    assert "timeout: 10s" not in text  # defaults are left out
    again = runner.invoke(["apply", "-f", str(out), "--prune"])
    assert again.exit_code == 0
    assert " 0 to create, 0 to update" in again.output and "0 to delete" in again.output
    stdout = runner.invoke(["export"])
    assert stdout.output == text


BAD = {
    "wrong types": (BASE.replace("scopes: [orders.read]\n    permission_sets", "scopes: 12\n    permission_sets"),
                    [(19, "integration_users[0].scopes", "input should be a valid list")]),
    "unknown reference": (BASE.replace("- named_credential: erp-api", "- named_credential: erp-apx"),
                          [(25, "permission_sets[0].grants[0].named_credential", "unknown named_credential 'erp-apx'")]),
    "duplicate ids": (BASE + "  - id: orders\n",
                      [(27, "permission_sets[1].id", "duplicate permission_set id 'orders'")]),
    "malformed CIDR": (BASE.replace("10.20.0.0/16", "10.20.0.0/33"),
                       [(18, "integration_users[0].ip_ranges[0]", "'10.20.0.0/33' is not a CIDR")]),
    "unknown scope": (BASE.replace("    scopes: [orders.read]\n    grants", "    scopes: [orders.delete]\n    grants"),
                      [(23, "permission_sets[0].scopes[0]", "unknown scope 'orders.delete'")]),
    "secret-looking key": (BASE.replace("    url: https://erp.example/api", "    url: https://erp.example/api\n"
                                                                             "    api_key: abc123"),
                           [(16, "named_credentials[0].api_key", "govern secrets put")]),
    "several errors": (BASE.replace("credential: erp-cc", "credential: nope").replace("10.20.0.0/16", "10.20.0.0/40")
                       .replace("  - id: erp\n", "  - id: erp\n    colour: blue\n") + "  - id: orders\n",
                       [(4, "systems[0].colour", "unknown key 'colour'"),
                        (15, "named_credentials[0].credential", "unknown credential 'nope'"),
                        (19, "integration_users[0].ip_ranges[0]", "is not a CIDR"),
                        (28, "permission_sets[1].id", "duplicate permission_set id")]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_exit_2_list_every_error_and_change_nothing(case, runner, tmp_path, dump):
    assert runner.invoke(["apply", "-f", str(EXAMPLE)]).exit_code == 0
    before = dump()
    text, expected = BAD[case]
    path = write(tmp_path, text)
    result = runner.invoke(["apply", "-f", path])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"error: {len(expected)} error(s) in {path}; nothing was applied"
    assert len(lines) == len(expected) + 1
    for line, (lineno, err_path, fragment) in zip(lines, expected):
        assert re.match(rf"^{re.escape(path)}:{lineno}:\d+: {re.escape(err_path)}: ", line), line
        assert fragment in line
    assert "abc123" not in result.output
    assert dump() == before


def test_yaml_syntax_error(runner, tmp_path, dump):
    before = dump()
    path = write(tmp_path, "apiVersion: govern/v1\nsystems:\n  - id: [erp\n  - id: b\n")
    result = runner.invoke(["apply", "-f", path])
    assert result.exit_code == 2
    assert re.match(rf"^{re.escape(path)}:\d+:\d+: YAML syntax error", result.output)
    assert dump() == before


def test_missing_file(runner, tmp_path):
    result = runner.invoke(["apply", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and result.output.startswith("error: cannot read")


def test_prune_leaves_permission_sets_of_other_sources(runner, tmp_path, services):
    import sqlalchemy as sa

    from govern.store.db import session_scope
    from govern.store.tables import PermissionSet

    with session_scope(services.sessions) as s:
        s.add(PermissionSet(external_id="sf-integration-ps", source="salesforce"))
    result = runner.invoke(["apply", "-f", write(tmp_path, BASE), "--prune"])
    assert result.exit_code == 0 and "sf-integration-ps" not in result.output
    with services.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM permission_set WHERE source = 'salesforce'")).scalar() == 1


def test_export_never_contains_secret_material(runner, services):
    from govern.landscape import export_document
    from tests.factories import make_landscape

    canary = "canary-7f3e-client-secret-value"
    make_landscape(services, client_secret=canary)
    text = export_document(services.sessions)
    assert canary not in text and "client_secret" not in text and "scrypt" not in text
    assert "order-sync" in text
    again = runner.invoke(["apply", "-f", "-"], input=text)
    assert again.exit_code == 0 and plan_lines(again.output)[-1].endswith("0 to delete")
    assert " 0 to create, 0 to update" in again.output


def test_a_failure_part_way_writes_nothing(services, dump, monkeypatch):
    """One transaction: systems and users are written before grants; a failure there rolls all back."""
    import govern.store.landscape as store
    from govern.landscape import apply_document

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_write_grants", boom)
    before = dump()
    with pytest.raises(RuntimeError):
        apply_document(services.sessions, EXAMPLE.read_text(), "example.yaml")
    assert dump() == before


def test_a_concurrent_change_is_a_conflict_not_a_crash(services, dump, monkeypatch):
    import sqlalchemy as sa

    import govern.store.landscape as store
    from govern.errors import Conflict
    from govern.landscape import apply_document

    real = store.apply_plan

    def racing(session, plan, stored, **kw):
        # Someone else creates the same system between our read and our write.
        session.execute(sa.text("INSERT INTO system (external_id, name, kind, description, sla, maintenance_windows, "
                                "scopes, contract, created_at, updated_at) VALUES ('erp', '', 'generic', '', '{}', "
                                "'[]', '[]', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        real(session, plan, stored, **kw)

    monkeypatch.setattr("govern.landscape.apply_plan", racing)
    before = dump()
    with pytest.raises(Conflict):
        apply_document(services.sessions, BASE, "g.yaml")
    assert dump() == before


def test_an_applied_change_is_in_the_admin_action_log_and_a_dry_run_is_not(runner, tmp_path, settings):
    import getpass

    import sqlalchemy as sa

    from govern.bootstrap import build_services
    from govern.store.tables import AdminAction

    path = write(tmp_path, BASE)
    assert runner.invoke(["apply", "-f", path, "--dry-run"]).exit_code == 0
    assert runner.invoke(["apply", "-f", path]).exit_code == 0
    assert runner.invoke(["apply", "-f", path]).exit_code == 0  # nothing to change: nothing recorded
    services = build_services(settings)
    try:
        with services.sessions() as s:
            actions = s.execute(sa.select(AdminAction).where(AdminAction.action == "apply")).scalars().all()
    finally:
        services.close()
    assert len(actions) == 1
    assert actions[0].actor == f"cli:{getpass.getuser()}" and actions[0].subject == path
    assert actions[0].after["counts"]["create"] > 0


def _with_credentials_block(extra: str) -> str:
    """BASE with `extra` appended to its credentials list."""
    head, tail = BASE.split("named_credentials:", 1)
    return head + extra + "named_credentials:" + tail


BASIC_TWO = _with_credentials_block(
    "  - id: erp-basic\n    system: erp\n    protocol: basic\n"
    "    principals: [{name: svc, subject: svc-user}, {name: ops, subject: ops-user}]\n")
BASIC_ONE = BASIC_TWO.replace(", {name: ops, subject: ops-user}", "")


def test_removing_a_principal_whose_secret_is_stored_is_refused_until_the_secret_is_deleted(runner, tmp_path, dump):
    assert runner.invoke(["apply", "-f", write(tmp_path, BASIC_TWO)]).exit_code == 0
    put = runner.invoke(["secrets", "put", "erp-basic", "--principal", "ops", "--field", "password"], input="ops-pw-1")
    assert put.exit_code == 0, put.output
    ref = "credential/erp-basic/principal/ops/password"
    before = dump()
    for extra in ([], ["--dry-run"]):
        refused = runner.invoke(["apply", "-f", write(tmp_path, BASIC_ONE, "one.yaml"), *extra])
        assert refused.exit_code == 2, refused.output
        assert (f"credentials.erp-basic.principals: principal ops would be removed from credential erp-basic, "
                f"but its secret {ref} is still stored; delete the secret first (govern secrets delete {ref}) "
                f"or keep it in the file") in refused.output
        assert "nothing was applied" in refused.output
    assert dump() == before
    assert runner.invoke(["secrets", "delete", ref, "--yes"]).exit_code == 0
    applied = runner.invoke(["apply", "-f", write(tmp_path, BASIC_ONE, "one.yaml")])
    assert applied.exit_code == 0, applied.output
    assert "~ update credential erp-basic (principals)" in applied.output


def test_pruning_a_credential_whose_secret_is_stored_is_refused(runner, tmp_path):
    assert runner.invoke(["apply", "-f", write(tmp_path, BASIC_TWO)]).exit_code == 0
    assert runner.invoke(["secrets", "put", "erp-basic", "--principal", "svc", "--field", "password"],
                         input="svc-pw-1").exit_code == 0
    refused = runner.invoke(["apply", "-f", write(tmp_path, BASE, "base.yaml"), "--prune"])
    assert refused.exit_code == 2
    assert "credentials.erp-basic: credential erp-basic would be deleted, but its secret " \
           "credential/erp-basic/principal/svc/password is still stored" in refused.output
