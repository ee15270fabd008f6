"""Workload identity federation (issue #21): a federated integration user, declared with `trust:` in governance.yaml
and applied, gets a govern token at /oauth/token with a token of a real local issuer (tests/fakes/oidc_issuer.py,
whose keys govern fetches over HTTP), and no secret. Each broken condition is refused with invalid_client and a
decision-log rule. The clock is the world's (tests/config_as_code/world.py): tests move it, they never sleep."""
from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.config_as_code.world import build_world, find
from tests.fakes.oidc_issuer import OidcIssuer

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
USER = "deployer"
SUBJECT = "repo:acme/shop:environment:production"
CLAIMS = {"repository": "acme/shop", "ref": "refs/heads/main", "environment": "production"}


@pytest.fixture
def issuer():
    server = OidcIssuer().start()
    yield server
    server.stop()


def federated_user(issuer: OidcIssuer, **trust) -> dict:
    return {"id": USER, "owner": "shop-team@example.com", "justification": "Deploys the shop from CI.",
            "review_date": "2099-01-01", "ip_ranges": ["127.0.0.0/8"], "scopes": ["orders.read"],
            "permission_sets": ["shop-reader"],
            "trust": {"issuers": [{"issuer": issuer.url, "jwks_url": issuer.jwks_url, "algorithms": ["RS256"]}],
                      "subject": SUBJECT, "claims": dict(CLAIMS), "max_token_age": "10m", **trust}}


@pytest.fixture
def world(settings, fake_upstream, resources, issuer):
    built = build_world(settings, fake_upstream, resources)
    built.doc["integration_users"].append(federated_user(issuer))
    built.apply()
    yield built
    built.services.close()


def token_url(world) -> str:
    return world.services.settings.public_endpoint("/oauth/token")


def mint(world, issuer: OidcIssuer, **kw) -> str:
    kw.setdefault("claims", dict(CLAIMS))
    return issuer.mint(kw.pop("sub", SUBJECT), kw.pop("aud", token_url(world)),
                       now=world.clock.now().timestamp(), **kw)


def exchange(world, assertion: str, *, client_id: str = USER, scope: str | None = None):
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion}
    if scope:
        data["scope"] = scope
    return world.client.post("/oauth/token", data=data)


def refused(resp, description: str | None = None):
    assert resp.status_code == 401, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == "invalid_client"
    if description is not None:
        assert description in body["error_description"], body
    return body


def last_token_decision(world):
    return [d for d in world.decisions() if d.action == "oauth_token"][-1]


def test_a_federated_user_gets_a_govern_token_with_no_secret(world, issuer):
    resp = exchange(world, mint(world, issuer), scope="orders.read")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["token_type"] == "Bearer" and body["scope"] == "orders.read"
    claims = jwt.decode(body["access_token"], KeySet.import_key_set(world.services.signing_keys.jwks()),
                        algorithms=["RS256"]).claims
    assert claims["sub"] == USER and claims["client_id"] == USER
    decision = last_token_decision(world)
    assert decision.outcome == "allow" and decision.integration_user == USER
    # the govern token works at the broker: an upstream token of the shop, through the permission set
    upstream = world.client.post("/api/v1/named-credentials/shop-orders/token", json={"scope": "orders.read"},
                                 headers={"Authorization": f"Bearer {body['access_token']}"})
    assert upstream.status_code == 200, upstream.get_data(as_text=True)
    # and the user has no secret to hold: govern refuses to store one for it
    from govern.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        world.put_user_secret(USER, "a-secret-nobody-needs")


@pytest.mark.parametrize("case, description", [
    ("audience", "audience (aud)"),
    ("subject", "subject (sub)"),
    ("claim", "claim 'ref'"),
    ("nested_claim", "claim 'environment'"),
    ("expired", "has expired"),
    ("too_old", "max_token_age"),
    ("not_yet_valid", "not valid yet"),
    ("no_jti", "token id (jti)"),
])
def test_each_broken_condition_is_refused_with_a_clear_oauth_error(world, issuer, case, description):
    kw: dict = {}
    now = world.clock.now().timestamp()
    if case == "audience":
        kw["aud"] = "https://some-other-service.example.com"
    elif case == "subject":
        kw["sub"] = "repo:acme/shop:pull_request"
    elif case == "claim":
        kw["claims"] = {**CLAIMS, "ref": "refs/heads/feature-x"}
    elif case == "nested_claim":
        kw["claims"] = {k: v for k, v in CLAIMS.items() if k != "environment"}
    elif case == "expired":
        kw.update(lifetime=-120)
    elif case == "too_old":
        kw.update(iat=now - 3600, lifetime=7200)
    elif case == "not_yet_valid":
        kw.update(now=now + 3600, iat=now)
    elif case == "no_jti":
        kw["drop"] = ("jti",)
    assertion = issuer.mint(kw.pop("sub", SUBJECT), kw.pop("aud", token_url(world)),
                            claims=kw.pop("claims", dict(CLAIMS)), now=kw.pop("now", now), **kw)
    refused(exchange(world, assertion), description)
    rule = {"nested_claim": "claim", "no_jti": "jti"}.get(case, case)
    assert f"federation:{rule}" in last_token_decision(world).rules


def test_a_wrong_issuer_and_a_forged_signature_say_nothing_more_than_refused(world, issuer):
    other = OidcIssuer().start()
    try:
        # a real issuer, but not one the user trusts
        body = refused(exchange(world, other.mint(SUBJECT, token_url(world), claims=dict(CLAIMS),
                                                  now=world.clock.now().timestamp())))
        assert body["error_description"] == "client authentication failed"
        assert "federation:issuer" in last_token_decision(world).rules
        # the trusted issuer's name and kid, signed with another key
        forged = issuer.mint(SUBJECT, token_url(world), claims=dict(CLAIMS), now=world.clock.now().timestamp(),
                             key=other.signing_key, header={"kid": issuer.signing_key.kid})
        assert refused(exchange(world, forged))["error_description"] == "client authentication failed"
        assert "federation:signature" in last_token_decision(world).rules
    finally:
        other.stop()


def test_none_and_hmac_with_the_public_key_are_never_accepted(world, issuer):
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(world.clock.now().timestamp())
    claims = {"iss": issuer.url, "sub": SUBJECT, "aud": token_url(world), "iat": now, "exp": now + 300,
              "jti": "none-1", **CLAIMS}
    unsigned = f"{b64({'alg': 'none', 'kid': issuer.signing_key.kid})}.{b64(claims)}."
    refused(exchange(world, unsigned), "client authentication failed")
    # HS256 keyed with the issuer's public key (the classic algorithm confusion); joserfc itself refuses to make
    # such a key, so the MAC is computed by hand
    public_pem = issuer.signing_key.as_pem(private=False)
    signing_input = f"{b64({'alg': 'HS256', 'kid': issuer.signing_key.kid})}.{b64({**claims, 'jti': 'hs-1'})}"
    mac = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    refused(exchange(world, f"{signing_input}.{mac.rstrip(b'=').decode()}"), "client authentication failed")
    assert "federation:algorithm" in last_token_decision(world).rules


def test_a_replayed_jti_is_refused(world, issuer):
    assertion = mint(world, issuer, jti="run-42-attempt-1")
    assert exchange(world, assertion).status_code == 200
    refused(exchange(world, assertion), "already used (jti)")
    assert "federation:replayed" in last_token_decision(world).rules


def test_a_jwks_key_rotation_is_picked_up_and_unknown_kids_are_refetched_at_most_once_per_interval(world, issuer):
    assert exchange(world, mint(world, issuer)).status_code == 200
    assert issuer.jwks_requests == 1
    assert exchange(world, mint(world, issuer)).status_code == 200
    assert issuer.jwks_requests == 1  # cached
    world.clock.advance(31)  # past the refetch interval, still within the cache's lifetime (300 s)
    issuer.rotate(keep_old=False)
    # the new kid is unknown to govern's cache: one refetch, and the new key verifies
    assert exchange(world, mint(world, issuer)).status_code == 200, "rotation not picked up"
    assert issuer.jwks_requests == 2
    # made-up kids cost no fetch within the refetch interval
    for i in range(3):
        refused(exchange(world, mint(world, issuer, header={"kid": f"made-up-{i}"})))
    assert issuer.jwks_requests == 2
    # a rotation right after a refetch waits out the interval, then is picked up
    issuer.rotate(keep_old=False)
    refused(exchange(world, mint(world, issuer)))
    assert issuer.jwks_requests == 2
    world.clock.advance(31)
    assert exchange(world, mint(world, issuer)).status_code == 200
    assert issuer.jwks_requests == 3


def test_an_unreachable_jwks_is_temporarily_unavailable_not_a_refusal(world, issuer):
    assertion = mint(world, issuer)
    issuer.stop()
    resp = exchange(world, assertion)
    assert resp.status_code == 503 and resp.get_json()["error"] == "temporarily_unavailable"


def test_an_address_outside_the_ranges_is_refused_before_any_key_is_fetched(world, issuer):
    resp = world.client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": USER, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": mint(world, issuer)}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert refused(resp)["error_description"] == "client authentication failed"
    assert issuer.jwks_requests == 0


def test_wildcards_match_and_inline_jwks_work(world, issuer):
    user = find(world.doc, "integration_users", USER)
    user["trust"]["subject"] = "repo:acme/shop:*"
    user["trust"]["issuers"] = [{"issuer": issuer.url, "jwks": issuer.jwks()}]
    user["trust"]["claims"] = {"ref": "refs/heads/*"}
    world.apply()
    assert exchange(world, mint(world, issuer, sub="repo:acme/shop:ref:refs/heads/dev",
                                claims={"ref": "refs/heads/dev"})).status_code == 200
    assert issuer.jwks_requests == 0  # the keys were inline
    refused(exchange(world, mint(world, issuer, sub="repo:acme/other:ref:refs/heads/dev",
                                 claims={"ref": "refs/heads/dev"})), "subject (sub)")
    refused(exchange(world, mint(world, issuer, sub="repo:acme/shop:ref:refs/tags/v1",
                                 claims={"ref": "refs/tags/v1"})), "claim 'ref'")


def test_kubernetes_style_nested_claims_and_an_explicit_audience(world, issuer):
    user = find(world.doc, "integration_users", USER)
    user["trust"].update(subject="system:serviceaccount:shop:deployer", audience="govern-ci",
                         claims={"kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "deployer"}}})
    world.apply()
    k8s = {"kubernetes.io": {"namespace": "shop", "serviceaccount": {"name": "deployer", "uid": "42"}}}
    assert exchange(world, mint(world, issuer, sub="system:serviceaccount:shop:deployer", aud="govern-ci",
                                claims=k8s)).status_code == 200
    # the default audience (the token URL) is no longer the one trusted
    refused(exchange(world, mint(world, issuer, sub="system:serviceaccount:shop:deployer", claims=k8s)),
            "audience (aud)")
    k8s["kubernetes.io"]["namespace"] = "other"
    refused(exchange(world, mint(world, issuer, sub="system:serviceaccount:shop:deployer", aud="govern-ci",
                                 claims=k8s)), "claim 'kubernetes.io'")


def test_the_trust_round_trips_through_export_and_plan(world, issuer):
    from govern.landscape import export_document

    exported = export_document(world.services.sessions)
    assert "trust:" in exported and issuer.jwks_url in exported and "auth: federated" in exported
    plan = world.apply()  # nothing changed: the stored trust reads back as the same spec
    assert not plan.has_changes, plan.lines()
    assert USER in plan.unchanged["integration_user"]


@pytest.mark.parametrize("trust, message", [
    ({"issuers": [{"issuer": "https://i.example", "jwks_url": "https://i.example/jwks", "algorithms": ["HS256"]}],
      "subject": "x"}, "input should be 'RS256'"),
    ({"issuers": [{"issuer": "https://i.example", "algorithms": ["RS256"]}], "subject": "x"},
     "exactly one of jwks_url"),
    ({"issuers": [{"issuer": "https://i.example", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}],
      "subject": "x"}, "public key"),
    ({"issuers": [{"issuer": "https://i.example", "jwks_url": "https://i.example/jwks"}], "subject": "x",
      "claims": {"aud": "x"}}, "checked by govern itself"),
    ({"issuers": [], "subject": "x"}, "at least 1 item"),
])
def test_a_bad_trust_is_refused_by_apply(world, issuer, trust, message):
    doc = world.doc
    find(doc, "integration_users", USER)["trust"] = trust
    assert message in world.apply_errors(doc)


def test_trust_and_a_secret_method_do_not_mix(world, issuer):
    doc = world.doc
    find(doc, "integration_users", USER)["auth"] = "client_secret_basic"
    assert "trust:" in world.apply_errors(doc)


def test_assertions_stay_out_of_logs_the_decision_log_and_the_database(world, issuer, caplog):
    import logging

    import sqlalchemy as sa

    caplog.set_level(logging.DEBUG)
    good = mint(world, issuer)
    issued = exchange(world, good)
    assert issued.status_code == 200
    replay = exchange(world, good)
    wrong = mint(world, issuer, claims={**CLAIMS, "ref": "refs/heads/evil"})
    refusal = exchange(world, wrong)
    world.decisions()
    logged = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records)
    token = issued.get_json()["access_token"]
    for canary in (good, good.split(".")[2], wrong.split(".")[2], token.split(".")[2]):
        assert canary not in logged
        assert canary not in replay.get_data(as_text=True) and canary not in refusal.get_data(as_text=True)
    with world.services.engine.connect() as conn:
        for table in ("decision", "seen_client_assertion", "integration_user"):
            dump = str(conn.execute(sa.text(f"SELECT * FROM {table}")).all())  # noqa: S608 - fixed names
            assert good.split(".")[2] not in dump and wrong.split(".")[2] not in dump, table
            assert "refs/heads/evil" not in dump  # a refused token's claim values are not recorded either


@pytest.mark.parametrize("misbehave, says", [("huge", "larger than"), ("redirect", "answered 302"),
                                             ("not_json", "did not answer JSON")])
def test_a_jwks_fetch_is_bounded_and_follows_no_redirect(issuer, misbehave, says):
    from govern.broker.federation import JwksUnavailable, RequestsJwksFetcher

    fetch = RequestsJwksFetcher(timeout=5)
    assert [k["kid"] for k in fetch(issuer.jwks_url)] == [issuer.signing_key.kid]
    issuer.misbehave = misbehave
    with pytest.raises(JwksUnavailable) as failed:
        fetch(issuer.jwks_url)
    assert says in failed.value.detail


def test_the_console_shows_a_federated_user_and_whom_it_trusts(world, issuer):
    import sqlalchemy as sa

    from govern.store.admins import create_admin
    from govern.store.tables import IntegrationUser
    from tests.admin.conftest import PASSWORD, sign_in

    create_admin(world.services.sessions, "auditor-user", PASSWORD, "auditor")
    assert sign_in(world.client, "auditor-user").status_code in (200, 302)
    with world.services.sessions() as s:
        user_id = s.execute(sa.select(IntegrationUser.id).where(IntegrationUser.external_id == USER)).scalar_one()
    listing = world.client.get("/admin/integration_users/")
    page = world.client.get(f"/admin/integration_users/details/?id={user_id}")
    assert listing.status_code == 200 and page.status_code == 200
    assert f"none: trusts {issuer.url} for {SUBJECT}" in page.get_data(as_text=True)
