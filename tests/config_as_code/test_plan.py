"""The planner: created, updated with a field diff, unchanged, deleted only with prune; deterministic."""
from govern.config_as_code.plan import make_plan
from govern.config_as_code.validate import validate_document
from tests.config_as_code.test_validate import BASE


def test_plan_from_empty_creates_in_dependency_order():
    plan = make_plan(validate_document(BASE, "g.yaml"), validate_document("apiVersion: govern/v1\n"))
    assert plan.lines() == [
        "+ create system erp", "+ create credential erp-cc", "+ create named_credential erp-api",
        "+ create integration_user order-sync", "+ create permission_set orders",
        "plan: 5 to create, 0 to update, 0 unchanged, 0 to delete",
    ]


def test_same_landscape_has_no_changes():
    landscape = validate_document(BASE, "g.yaml")
    plan = make_plan(landscape, validate_document(BASE, "g.yaml"))
    assert not plan.has_changes and plan.counts["unchanged"] == 5


def test_update_lists_changed_fields_with_before_and_after():
    current = validate_document(BASE, "g.yaml")
    desired = validate_document(BASE.replace("  - id: erp\n", "  - id: erp\n    contract: {owner: erp@example.com}\n"),
                                "g.yaml")
    plan = make_plan(desired, current)
    (change,) = plan.changes
    assert change.line() == "~ update system erp (owner)"
    assert change.diff == {"owner": (None, "erp@example.com")}
    assert plan.to_dict()["changes"][0]["changes"]["owner"] == {"before": None, "after": "erp@example.com"}


def test_deletes_only_with_prune_and_in_reverse_dependency_order():
    current = validate_document(BASE, "g.yaml")
    desired = validate_document("apiVersion: govern/v1\n")
    assert not make_plan(desired, current).has_changes
    plan = make_plan(desired, current, prune=True)
    assert [c.line() for c in plan.changes] == [
        "- delete permission_set orders", "- delete integration_user order-sync", "- delete named_credential erp-api",
        "- delete credential erp-cc", "- delete system erp"]
