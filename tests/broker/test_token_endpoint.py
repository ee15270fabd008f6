"""POST /api/v1/named-credentials/{name}/token: allow, each denial (403, its rule, logged), 404, 503."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from tests.broker.conftest import UPSTREAM_TOKEN, access_token, ask, decisions
from tests.factories import make_landscape, update_entity


def test_allowed_returns_only_the_token_fields_and_is_logged(broker_client, broker_services, landscape):
    token = access_token(broker_client)
    resp = ask(broker_client, token, scope="orders.read", headers={"X-Correlation-ID": "corr-allow-1"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["access_token"] == UPSTREAM_TOKEN and body["scope"] == "orders.read"
    assert 0 < body["expires_in"] <= 900  # capped by the permission set's lifetime
    assert "never-returned" not in resp.get_data(as_text=True)
    assert broker_services.upstream_tokens.calls == [("erp-api", "default", ("orders.read",))]
    [rec] = decisions(broker_services)
    assert rec.allowed and rec.rules == ["permit:order-sync-ps"] and rec.correlation_id == "corr-allow-1"
    assert rec.scopes_requested == ["orders.read"] and rec.scopes_granted == ["orders.read"]
    assert rec.source_ip == "127.0.0.1" and rec.upstream_status == 200 and rec.latency_ms is not None
    assert rec.integration_user == "order-sync" and rec.principal == "default"


def test_no_scope_asked_grants_the_permission_set_scopes_within_the_token(broker_client, broker_services, landscape):
    resp = ask(broker_client, access_token(broker_client))
    assert resp.status_code == 200
    assert resp.get_json()["scope"] == "orders.read"  # orders.write is in the token but in no permission set


def _denied(resp, rule):
    assert resp.status_code == 403, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["code"] == "access_denied" and body["rule"] == rule
    return body


def test_scope_outside_the_grant_is_denied_and_logged(broker_client, broker_services, landscape):
    resp = ask(broker_client, access_token(broker_client), scope="orders.write")
    _denied(resp, "deny:scope_outside_grant")
    [rec] = decisions(broker_services)
    assert not rec.allowed and rec.rules == ["deny:scope_outside_grant"] and rec.scopes_requested == ["orders.write"]
    assert broker_services.upstream_tokens.calls == []


def test_ip_outside_the_ranges_is_denied_and_logged(broker_client, broker_services, landscape):
    token = access_token(broker_client)  # issued from inside 127.0.0.0/8
    resp = ask(broker_client, token, remote="203.0.113.9")
    _denied(resp, "deny:ip_outside_ranges")
    [rec] = decisions(broker_services)
    assert rec.rules == ["deny:ip_outside_ranges"] and rec.source_ip == "203.0.113.9" and not rec.allowed
    assert rec.integration_user == "order-sync"


def test_suspended_user_is_denied_within_the_recheck_interval(broker_client, broker_services, clock, landscape):
    token = access_token(broker_client)
    assert ask(broker_client, token).status_code == 200
    update_entity(broker_services, "integration_users", "order-sync", status="suspended")
    clock.advance(3)  # past the landscape re-check interval (2 s)
    body = _denied(ask(broker_client, token), "deny:user_suspended")
    assert "order-sync" not in body["detail"]
    recs = decisions(broker_services)
    assert [r.allowed for r in recs] == [True, False] and recs[1].rules == ["deny:user_suspended"]


def test_expired_assignment_is_denied_and_logged(broker_client, broker_services, landscape):
    token = access_token(broker_client)
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    update_entity(broker_services, "integration_users", "order-sync",
                  permission_sets=[{"permission_set": "order-sync-ps", "until": yesterday}])
    _denied(ask(broker_client, token), "deny:assignment_expired")
    [rec] = decisions(broker_services)
    assert rec.rules == ["deny:assignment_expired"]


def test_assignment_is_valid_through_its_last_day(broker_client, broker_services, clock):
    make_landscape(broker_services, assignment_expires=clock.now().date())
    assert ask(broker_client, access_token(broker_client)).status_code == 200


def test_guardrail_forbid_wins_over_the_permission_set(broker_client, broker_services, landscape):
    token = access_token(broker_client)
    update_entity(broker_services, "permission_sets", "order-sync-ps", system_permissions=["ApiEnabled", "ModifyAllData"])
    _denied(ask(broker_client, token), "forbid:no-admin-equivalent-grants")
    [rec] = decisions(broker_services)
    assert rec.rules == ["forbid:no-admin-equivalent-grants"] and not rec.allowed


def test_guardrail_caps_token_lifetime(broker_client, broker_services):
    make_landscape(broker_services, max_token_lifetime=4 * 3600)
    _denied(ask(broker_client, access_token(broker_client)), "forbid:cap-token-lifetime")


def test_guardrail_requires_ip_restrictions(broker_client, broker_services):
    make_landscape(broker_services, cidrs=("0.0.0.0/0",))
    _denied(ask(broker_client, access_token(broker_client)), "forbid:require-ip-restrictions")


def test_guardrail_forbids_full_scope(broker_client, broker_services):
    make_landscape(broker_services, user_scopes=("full",), ps_scopes=("full",))
    _denied(ask(broker_client, access_token(broker_client), scope="full"), "forbid:no-full-or-wildcard-scopes")


def test_no_grant_for_the_credential_is_denied_by_default(broker_client, broker_services, landscape):
    make_landscape(broker_services, system="crm", credential="crm-cc", named_credential="crm-api",
                   user="other-user", permission_set="other-ps", client_id="crm-client")
    body = _denied(ask(broker_client, access_token(broker_client), name="crm-api"), "deny:default")
    assert "other-user" not in str(body) and "other-ps" not in str(body)


def test_unknown_named_credential_is_404_but_only_after_authentication(broker_client, broker_services, landscape):
    resp = broker_client.post("/api/v1/named-credentials/nope/token", json={})
    assert resp.status_code == 401 and resp.mimetype == "application/problem+json"
    resp = ask(broker_client, access_token(broker_client), name="nope")
    assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"


def test_without_an_upstream_token_source_the_answer_is_503(broker_client, broker_services, landscape):
    broker_services.upstream_tokens = None
    resp = ask(broker_client, access_token(broker_client))
    assert resp.status_code == 503 and resp.get_json()["code"] == "upstream_tokens_unavailable"
    [rec] = decisions(broker_services)
    assert rec.allowed  # the decision itself was an allow, and it is on record


def test_per_user_principal_resolves_to_the_callers_own(broker_client, broker_services):
    make_landscape(broker_services, principal_type="per_user", principal="order-sync-upstream")
    assert ask(broker_client, access_token(broker_client)).status_code == 200
    assert broker_services.upstream_tokens.calls[0][1] == "order-sync-upstream"


def test_database_outage_keeps_the_last_snapshot_briefly_then_fails_closed(broker_client, broker_services, clock,
                                                                            landscape, monkeypatch):
    token = access_token(broker_client)
    assert ask(broker_client, token).status_code == 200

    def unreadable(connection):
        raise sa.exc.OperationalError("SELECT version FROM landscape_version", {}, Exception("database is down"))

    monkeypatch.setattr("govern.store.landscape_version.read_version", unreadable)  # the DB "fails"
    clock.advance(3)
    assert ask(broker_client, token).status_code == 200  # degraded: the last snapshot, read less than 60 s ago
    clock.advance(60)
    resp = ask(broker_client, token)
    assert resp.status_code == 503 and resp.get_json()["code"] == "landscape_unavailable"


def test_upstream_failure_is_logged_with_its_status(broker_client, broker_services, landscape):
    from govern.errors import UpstreamUnavailable

    def failing(*a, **kw):
        raise UpstreamUnavailable("the fake upstream is down")

    broker_services.upstream_tokens.get_token = failing
    resp = ask(broker_client, access_token(broker_client))
    assert resp.status_code == 503 and resp.get_json()["code"] == "upstream_unavailable"
    [rec] = decisions(broker_services)
    assert rec.allowed and rec.upstream_status == 503


def test_a_user_created_after_the_snapshot_is_found_at_once(broker_client, broker_services, landscape):
    assert ask(broker_client, access_token(broker_client)).status_code == 200  # the snapshot is built
    make_landscape(broker_services, system="crm", credential="crm-cc", named_credential="crm-api",
                   user="new-user", permission_set="new-ps", client_id="crm-client")
    # No clock advance: the snapshot is younger than the re-check interval, yet the new user and the new
    # named credential are found.
    assert ask(broker_client, access_token(broker_client, user="new-user"), name="crm-api").status_code == 200
