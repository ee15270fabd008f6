"""Every govern-landscape rule on the pure model: a clean landscape (negative) and one mutation (positive)."""
from __future__ import annotations

import datetime as dt

import pytest

from govern.audit.engine import catalogue, run_rules
from govern.audit.model import (AssignmentM, AuditModel, ConnectedAppM, CredentialM, GrantM, NamedCredentialM, PermissionSetM,
                                PollM, PrincipalM, RequestPattern, SecretM, SecretVersionM, SystemM, UsageM, UserM,
                                WriteMinuteM)
from tests.audit.test_salesforce_import import SF_NEGATIVE, SF_POSITIVE

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=200)


def clean() -> AuditModel:
    m = AuditModel(source="govern", now=NOW, usage_loaded=True)
    m.systems["erp"] = SystemM("erp", "erp", "team@x", "oncall@x", "https://rb/x", 1000)
    m.systems["crm"] = SystemM("crm", "salesforce", "team@x", "oncall@x", "https://rb/y", 1000)
    # their non-production twins (GOV-BEHAV-006): one by its name, one by its kind
    m.systems["erp-staging"] = SystemM("erp-staging", "erp", "team@x", "oncall@x", "https://rb/x", 1000)
    m.systems["crm-sandbox"] = SystemM("crm-sandbox", "salesforce", "team@x", "oncall@x", "https://rb/y", 1000)
    m.credentials["erp-cc"] = CredentialM("erp-cc", "erp", "oauth2_client_credentials", scopes=["orders.read"],
                                          rotation={"every": "90d"}, principals=[PrincipalM("default")],
                                          expiry={"client_secret_expires": (NOW + dt.timedelta(days=20)).date().isoformat()})
    m.credentials["crm-jwt"] = CredentialM("crm-jwt", "crm", "oauth2_jwt_bearer", "per_user", ["api"],
                                           rotation={"every": "90d"}, principals=[PrincipalM("p1", "per_user", "sync")])
    m.named_credentials["erp-api"] = NamedCredentialM("erp-api", "erp-cc", "https://erp/api", "v2")
    m.named_credentials["crm-api"] = NamedCredentialM("crm-api", "crm-jwt", "https://acme.my.salesforce.com", "v61.0")
    m.permission_sets["erp-ps"] = PermissionSetM("erp-ps", scopes=["orders.read"], api_types=["REST"],
                                                 max_token_lifetime_seconds=900, grants=[
                                                     GrantM("erp-api", "default", ["GET"], ["/orders/*"])])
    m.permission_sets["crm-ps"] = PermissionSetM("crm-ps", scopes=["api"], api_types=["REST"],
                                                 max_token_lifetime_seconds=900, grants=[
                                                     GrantM("crm-api", "p1", ["GET"], ["/services/data/*/sobjects/**"])])
    m.users["orders"] = UserM("orders", "Order sync", "team@x", "why", review_date=NOW.date() + dt.timedelta(days=30),
                              allowed_cidrs=["10.1.0.0/24"], allowed_scopes=["orders.read"], created_at=OLD,
                              last_used_at=NOW, client_secret_set_at=NOW - dt.timedelta(days=10),
                              assignments=[AssignmentM("erp-ps")])
    m.users["sync"] = UserM("sync", "CRM sync", "team@x", "why", review_date=NOW.date() + dt.timedelta(days=30),
                            allowed_cidrs=["10.2.0.0/24"], allowed_scopes=["api"], created_at=OLD, last_used_at=NOW,
                            assignments=[AssignmentM("crm-ps")])
    m.secrets.append(SecretM("credential/erp-cc/client_secret", "credential", "erp-cc", "client_secret", "oauth2",
                             "90d", 86400, NOW - dt.timedelta(days=5),
                             [SecretVersionM(2, "current", NOW - dt.timedelta(days=5))], "finished"))
    m.usage["orders"] = UsageM("orders", 100, 0, NOW, [RequestPattern("erp-api", "GET", "/orders/1", None, "REST",
                                                                      ("orders.read",), 100)])
    m.usage["sync"] = UsageM("sync", 50, 0, NOW, [RequestPattern("crm-api", "GET", "/services/data/v61.0/sobjects/Order",
                                                                 None, "REST", ("api",), 50)],
                             principals={("crm-api", "p1"): 50})
    return m


def _u(m, uid="orders"):
    return m.users[uid]


def _trust(subject="repo:acme/orders:environment:production", audience="govern",
           jwks_url="https://token.actions.githubusercontent.com/.well-known/jwks", **claims):
    from govern.domain.federation import FederationTrust

    return FederationTrust.model_validate({
        "issuers": [{"issuer": "https://token.actions.githubusercontent.com", "jwks_url": jwks_url}],
        "subject": subject, "audience": audience, "claims": claims})


MUTATIONS = {
    "GOV-FED-001": lambda m: setattr(_u(m), "trust", _trust(subject="repo:acme/*")),
    "GOV-FED-002": lambda m: setattr(_u(m), "trust", _trust(audience=None)),
    "GOV-FED-003": lambda m: setattr(_u(m), "trust", _trust(ref="refs/heads/*")),
    "GOV-FED-004": lambda m: setattr(_u(m), "trust", _trust(jwks_url="http://token.example.com/.well-known/jwks")),
    "GOV-ACCESS-001": lambda m: m.permission_sets["erp-ps"].system_permissions.append("ModifyAllData"),
    "GOV-ACCESS-002": lambda m: m.permission_sets["erp-ps"].system_permissions.append("ViewSetup"),
    "GOV-ACCESS-003": lambda m: (m.permission_sets["erp-ps"].system_permissions.append("ManageUsers"),
                                 m.permission_sets["crm-ps"].system_permissions.append("AssignPermissionSets"),
                                 _u(m).assignments.append(AssignmentM("crm-ps"))),
    "GOV-ACCESS-005": lambda m: m.permission_sets["erp-ps"].grants[0].paths.__setitem__(0, "/**"),
    "GOV-ACCESS-006": lambda m: setattr(_u(m), "name", "Salesforce Admin"),
    "GOV-NET-001": lambda m: _u(m).allowed_cidrs.clear(),
    "GOV-NET-004": lambda m: setattr(m.named_credentials["erp-api"], "url", "http://erp.example.com/api"),
    "GOV-NET-002": lambda m: _u(m).allowed_cidrs.append("0.0.0.0/0"),
    "GOV-OAUTH-001": lambda m: _u(m).allowed_scopes.append("full"),
    "GOV-OAUTH-002": lambda m: m.permission_sets["erp-ps"].scopes.append("orders.*"),
    "GOV-OAUTH-003": lambda m: _u(m).allowed_scopes.append("refresh_token"),
    "GOV-OAUTH-004": lambda m: setattr(m.credentials["erp-cc"], "protocol", "oauth2_refresh_token"),
    "GOV-OAUTH-005": lambda m: setattr(m.permission_sets["erp-ps"], "max_token_lifetime_seconds", 86400),
    # a pair (erp and crm) is one integration; a third system (the declared source) makes it shared
    "GOV-ID-001": lambda m: (_u(m).assignments.append(AssignmentM("crm-ps")), setattr(_u(m), "source_system", "web")),
    "GOV-ID-002": lambda m: m.usage["orders"].principals.__setitem__(("crm-api", "p1"), 3),
    "GOV-ID-003": lambda m: m.users["sync"].assignments.append(AssignmentM("erp-ps")),
    "GOV-STALE-001": lambda m: (setattr(_u(m), "last_used_at", OLD), setattr(m.usage["orders"], "last_at", OLD)),
    "GOV-STALE-002": lambda m: m.named_credentials.__setitem__("old-api", NamedCredentialM(
        "old-api", "erp-cc", "https://erp/old", "v1", created_at=OLD)),
    "GOV-STALE-003": lambda m: setattr(_u(m), "review_date", NOW.date() - dt.timedelta(days=1)),
    "GOV-STALE-004": lambda m: (m.permission_sets.__setitem__("temp-backfill", PermissionSetM("temp-backfill")),
                                _u(m).assignments.append(AssignmentM("temp-backfill"))),
    "GOV-STALE-005": lambda m: setattr(_u(m).assignments[0], "expires_at", NOW.date() - dt.timedelta(days=3)),
    "GOV-STALE-006": lambda m: setattr(_u(m), "status", "suspended"),
    "GOV-ROT-001": lambda m: setattr(m.secrets[0].versions[0], "created_at", OLD),
    "GOV-ROT-002": lambda m: (setattr(m.secrets[0], "schedule", None), m.credentials["erp-cc"].rotation.clear()),
    "GOV-ROT-003": lambda m: setattr(m.secrets[0], "last_rotation_state", "failed"),
    "GOV-ROT-004": lambda m: m.secrets[0].versions.append(SecretVersionM(1, "previous", OLD,
                                                                         NOW - dt.timedelta(days=4))),
    "GOV-API-001": lambda m: m.permission_sets["erp-ps"].api_types.append("SOAP"),
    "GOV-API-002": lambda m: m.permission_sets["erp-ps"].api_types.append("Bulk"),
    "GOV-API-003": lambda m: m.named_credentials.__setitem__("erp-soap", NamedCredentialM(
        "erp-soap", "erp-cc", "https://erp/soap", "v1", "SOAP", created_at=OLD)),
    "GOV-USAGE-001": lambda m: m.permission_sets["erp-ps"].grants.append(GrantM("crm-api", None, ["GET"], ["/x"])),
    "GOV-USAGE-002": lambda m: m.permission_sets["erp-ps"].scopes.append("orders.write"),
    "GOV-USAGE-003": lambda m: m.permission_sets["erp-ps"].grants[0].methods.append("DELETE"),
    "GOV-USAGE-004": lambda m: m.permission_sets["erp-ps"].api_types.append("Streaming"),
    "GOV-USAGE-005": lambda m: m.permission_sets.__setitem__("spare", PermissionSetM("spare")),
    "GOV-BEHAV-001": lambda m: setattr(m.usage["orders"], "denied_by_day", {NOW.date(): 80}),
    "GOV-GOV-001": lambda m: setattr(m.systems["erp"], "owner", None),
    "GOV-GOV-002": lambda m: setattr(m.systems["erp"], "escalation_contact", ""),
    "GOV-GOV-003": lambda m: setattr(m.systems["erp"], "runbook_url", None),
    "GOV-GOV-004": lambda m: setattr(m.systems["erp"], "daily_api_budget", None),
    "GOV-GOV-005": lambda m: setattr(_u(m), "owner", None),
    "GOV-SECRET-001": lambda m: m.systems["erp"].config.update({"contract": {"api_password": "hunter2"}}),
    "GOV-SECRET-002": lambda m: setattr(m.credentials["erp-cc"], "protocol", "basic"),
    # only Salesforce's platform API versions are judged: the crm named credential, not the ERP's
    "GOV-VER-001": lambda m: setattr(m.named_credentials["crm-api"], "api_version", None),
    "GOV-VER-002": lambda m: setattr(m.named_credentials["crm-api"], "api_version", "v29.0"),
    "GOV-DATA-001": lambda m: m.permission_sets["crm-ps"].system_permissions.append("DataExport"),
    "GOV-LOG-001": lambda m: m.permission_sets["crm-ps"].system_permissions.append("ViewEventLogFiles"),
    "GOV-IDSEC-001": lambda m: m.permission_sets["crm-ps"].system_permissions.append("FreezeUsers"),
    "GOV-ORG-001": lambda m: m.permission_sets["crm-ps"].system_permissions.append("ConnectOrgToEnvironmentHub"),
    "GOV-EMAIL-001": lambda m: m.permission_sets["crm-ps"].system_permissions.append("EmailMass"),
    "GOV-BEHAV-002": lambda m: m.usage["orders"].polls.append(PollM("erp-api", "/orders/1", 99, 30.0, 1.0, OLD, NOW)),
    "GOV-BEHAV-003": lambda m: m.usage["orders"].write_minutes.extend(
        WriteMinuteM("erp-api", "Order", "POST", NOW - dt.timedelta(minutes=i), 101) for i in (0, 9)),
    "GOV-BEHAV-004": lambda m: (
        m.permission_sets["crm-ps"].grants.append(GrantM("crm-api", "p1", ["PATCH"],
                                                         ["/services/data/*/sobjects/Account/Erp_Id__c/*"])),
        m.usage["sync"].patterns.append(RequestPattern("crm-api", "POST", "/services/data/v61.0/sobjects/Account", None,
                                                       "REST", ("api",), 20))),
    "GOV-BEHAV-005": lambda m: m.usage["sync"].patterns.extend(
        RequestPattern("crm-api", "POST", f"/services/data/v61.0/sobjects/Obj{i}__c", None, "REST", ("api",), 1)
        for i in range(10)),
    "GOV-BEHAV-006": lambda m: m.systems.pop("erp-staging"),
    # the client secret expires in 20 days and nothing rotates it
    "GOV-SECRET-007": lambda m: setattr(m.credentials["erp-cc"], "rotation", {}),
    "GOV-SECRET-006": lambda m: m.connected_apps.__setitem__("app", ConnectedAppM("app", certificate={
        "not_after": (NOW + dt.timedelta(days=10)).isoformat(), "signature_hash": "sha256", "key_type": "rsa",
        "key_size": 2048})),
}


def _ids(model):
    return {f.rule_id for f in run_rules(model)}


def test_clean_landscape_has_no_findings():
    assert run_rules(clean()) == []


@pytest.mark.parametrize("rule_id", sorted(MUTATIONS))
def test_rule_positive_and_negative(rule_id):
    assert rule_id not in _ids(clean())
    model = clean()
    MUTATIONS[rule_id](model)
    assert rule_id in _ids(model)


def test_every_rule_has_a_positive_and_a_negative_case():
    covered = set(MUTATIONS) | {r for r, _ in SF_POSITIVE}
    negatives = set(MUTATIONS) | {r for r, _ in SF_NEGATIVE}
    assert set(catalogue()) - covered == set()
    assert set(catalogue()) - negatives == set()
    assert len(catalogue()) >= 30


def test_every_rule_is_documented():
    for r in catalogue().values():
        assert r.id.startswith("GOV-") and r.title and r.remediation
        assert r.rationale.startswith(("§", "Anti-patterns")), r.id


def test_secret_values_never_reach_findings():
    model = clean()
    MUTATIONS["GOV-SECRET-001"](model)
    text = repr([f.as_dict() for f in run_rules(model)])
    assert "hunter2" not in text


def test_users_younger_than_the_window_are_not_judged_on_unused_grants():
    model = clean()
    MUTATIONS["GOV-USAGE-001"](model)
    _u(model).created_at = NOW - dt.timedelta(days=3)
    assert "GOV-USAGE-001" not in _ids(model)


def test_rule_catalogue_is_documented_in_docs():
    from pathlib import Path

    from govern.audit.catalogue_doc import render

    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    assert render(doc) == doc, "regenerate: python -m govern.audit.catalogue_doc docs/audit.md"


def test_an_active_users_client_secret_without_a_schedule_is_flagged():
    model = clean()
    model.secrets.append(SecretM("integration_user/orders/client_secret", "integration_user", "orders", "client_secret",
                                 "client_secret", "90d", 86400, NOW - dt.timedelta(days=5)))
    assert "GOV-ROT-002" not in _ids(model)  # scheduled: fine
    model.secrets[-1].schedule = None
    found = [f for f in run_rules(model) if f.rule_id == "GOV-ROT-002"]
    assert [f.subject for f in found] == ["integration_user/orders/client_secret"]
    model.users["orders"].status = "suspended"
    assert "GOV-ROT-002" not in _ids(model)


def test_a_credential_without_a_declared_expiry_is_not_flagged_for_lacking_a_rotation():
    model = clean()
    model.credentials["erp-cc"].rotation = {}
    model.credentials["erp-cc"].expiry = {}
    assert "GOV-SECRET-007" not in _ids(model)
    model.credentials["erp-cc"].expiry = {"client_secret_expires": "2026-11-01"}  # already past: still flagged
    [finding] = [f for f in run_rules(model) if f.rule_id == "GOV-SECRET-007"]
    assert "expired on 2026-11-01" in finding.message
