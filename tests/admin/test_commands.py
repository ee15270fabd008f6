"""Console commands call the config, secret and rotation services and record who did what."""
from __future__ import annotations

import pytest
from sqlmodel import select

from govern.domain.secret import Secret
from govern.errors import ValidationFailed
from tests.factories import ACTOR, make_landscape


def _actions(services):
    from govern.store.tables import AdminAction

    with services.sessions() as s:
        return [(a.actor, a.action, a.subject, a.before, a.after) for a in s.exec(select(AdminAction).order_by(AdminAction.id))
                if a.actor != ACTOR]  # not the setup's apply and secret


def _user(services, name):
    from govern.store.tables import IntegrationUser

    with services.sessions() as s:
        return s.exec(select(IntegrationUser).where(IntegrationUser.external_id == name)).first()


def test_create_suspend_assign_through_the_config_service(services):
    from govern.admin import commands

    make_landscape(services)
    commands.save_integration_user(services, "alice", "invoice-push",
                                   {"name": "Invoice push", "owner": "fin@example.com", "justification": "invoices",
                                    "ip_ranges": ["10.0.0.0/24"], "scopes": ["orders.read"]}, create=True)
    assert _user(services, "invoice-push").owner == "fin@example.com"
    commands.assign_permission_set(services, "alice", "invoice-push", "order-sync-ps")
    commands.set_user_status(services, "bob", "invoice-push", "suspended")
    assert _user(services, "invoice-push").status == "suspended"
    actions = _actions(services)
    assert [a[1] for a in actions] == ["integration_user.create", "assignment.add", "integration_user.suspend"]
    assert actions[2][3] == {"status": "active"} and actions[2][4] == {"status": "suspended"}
    # The other user from the landscape was not touched (no prune).
    assert _user(services, "order-sync").status == "active"


def test_invalid_input_is_refused_by_the_service_and_nothing_is_recorded(services):
    from govern.admin import commands

    with pytest.raises(ValidationFailed):
        commands.save_integration_user(services, "alice", "bad-cidr", {"ip_ranges": ["not-a-cidr"]}, create=True)
    assert _user(services, "bad-cidr") is None
    commands.save_integration_user(services, "alice", "someone", {"owner": "o@example.com"}, create=True)
    with pytest.raises(ValidationFailed):
        commands.assign_permission_set(services, "alice", "someone", "no-such-set")
    assert [a[1] for a in _actions(services)] == ["integration_user.create"]


def test_set_secret_records_version_but_never_the_value(services):
    from govern.admin import commands

    make_landscape(services)
    status = commands.set_secret(services, "alice", owner_kind="credential", owner="erp-cc", field="client_secret",
                                 value=Secret("canary-value-123456"))
    assert status.version == 1
    assert "canary-value-123456" not in repr(_actions(services))
