"""The seed's behaviour anti-patterns (GOV-BEHAV-002..006), found in decision data made through the real path.

Polling goes through the whole app: a landscape applied from YAML, a govern token, proxied GETs to a local fake
resource server, the real decider and decision log, a fake clock moved between calls. The volume rules (bursts of
writes, inserts, many objects) apply a landscape with `govern apply`, let the real PolicyDecider decide each
request and write the records with the real hash-chained DecisionLog (`append`, its own writer, never raw SQL),
then run `govern audit`. Each rule is shown firing, and not firing on a near miss.
"""
from __future__ import annotations

import datetime as dt
import json
import textwrap

import pytest

from govern.domain.access import AccessRequest, Caller
from govern.domain.access_rules import salesforce_object
from govern.store.audit_service import run_audit

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SOBJ = "/services/data/v61.0/sobjects"
IP = "10.0.0.5"
BARE = {f"{SOBJ}/Lead"}


# --- polling, through the proxy ----------------------------------------------------------------------------

@pytest.fixture
def world(settings, fake_upstream, resources):
    from tests.config_as_code.world import build_world

    built = build_world(settings, fake_upstream, resources, now=NOW - dt.timedelta(days=3))
    yield built
    built.services.close()


def _behaviour(report_or_findings, rule_id: str) -> dict[str, dict]:
    findings = report_or_findings["findings"] if isinstance(report_or_findings, dict) else report_or_findings
    return {f["subject"]: f for f in findings if f["rule_id"] == rule_id}


def test_polling_the_same_get_at_a_fixed_interval(world):
    def poll(path: str, gaps: list[float]) -> None:
        for gap in gaps:
            r = world.proxy("stock-api", path)
            assert r.status_code == 200, r.get_data(as_text=True)
            world.clock.advance(gap)

    poll("items/1", [30.0] * 60)  # 60 calls, every 30 s: polling
    poll("items/2", [10.0, 50.0] * 30)  # as many calls, 30 s apart on average, but irregular: a busy user
    poll("items/3", [600.0] * 60)  # regular, but every 10 minutes: not a short interval
    poll("items/4", [30.0] * 40)  # regular and short, but 40 calls: under poll_min_calls (60)
    assert world.services.decision_log.flush()

    report = run_audit(world.services, source="govern").report
    polls = _behaviour(report, "GOV-BEHAV-002")
    assert set(polls) == {"order-sync/stock-api/items/1"}, polls
    ev = polls["order-sync/stock-api/items/1"]["evidence"]
    assert ev["calls"] == 60 and ev["interval_seconds"] == 30.0 and ev["interval_stdev_seconds"] < 0.5
    assert ev["method"] == "GET" and ev["path"] == "/items/1"
    first, last = dt.datetime.fromisoformat(ev["first"]), dt.datetime.fromisoformat(ev["last"])
    assert dt.timedelta(minutes=29) <= last - first <= dt.timedelta(minutes=30)
    finding = polls["order-sync/stock-api/items/1"]
    assert finding["severity"] == "medium" and finding["location"]["file"] == "governance.yaml"
    assert "Polling every 5 seconds" in finding["rationale"]


def test_insert_instead_of_upsert_through_the_proxy(world):
    """Salesforce-shaped calls through the proxy: the decision records the path under the named credential's base
    (`/sobjects/Account`) and the object the proxy read from it."""
    from tests.config_as_code.world import find

    nc = find(world.doc, "named_credentials", "stock-api")
    nc["url"], nc["methods"] = world.resources.url + "/services/data/v61.0", ["GET", "POST", "PATCH"]
    find(world.doc, "permission_sets", "shop-reader")["grants"][1]["methods"] = ["GET", "POST", "PATCH"]
    world.apply()
    body = {"json": {"Name": "Acme"}}
    for i in range(3):  # the integration knows the upsert: it used it
        r = world.proxy("stock-api", f"sobjects/Account/Erp_Id__c/E-{i}", "PATCH", **body)
        assert r.status_code < 300, r.get_data(as_text=True)
        world.clock.advance(60)
    for _ in range(20):  # ...and still creates Accounts with POST
        assert world.proxy("stock-api", "sobjects/Account", "POST", **body).status_code < 300
        world.clock.advance(60)
    for _ in range(19):  # Contacts: as many creates less one, under upsert_min_inserts, with an upsert path too
        assert world.proxy("stock-api", "sobjects/Contact", "POST", **body).status_code < 300
        world.clock.advance(60)
    assert world.proxy("stock-api", "sobjects/Contact/Erp_Id__c/C-1", "PATCH", **body).status_code < 300
    assert world.services.decision_log.flush()
    recorded = {(d.method, d.path, d.resource_object) for d in world.decisions() if d.action == "proxy"}
    assert ("POST", "/sobjects/Account", "Account") in recorded

    inserts = _behaviour(run_audit(world.services, source="govern").report, "GOV-BEHAV-004")
    assert set(inserts) == {"order-sync/stock-api/Account"}, inserts
    ev = inserts["order-sync/stock-api/Account"]["evidence"]
    assert ev["inserts"] == 20 and ev["insert_paths"] == ["/sobjects/Account"]
    assert ev["upsert_paths"] == ["stock-api: PATCH /sobjects/Account/Erp_Id__c/… (used)"]


# --- the volume rules, through govern apply, the decider and the decision log ------------------------------

LANDSCAPE = textwrap.dedent("""\
    apiVersion: govern/v1
    kind: Landscape
    systems:
      - {id: salesforce, kind: salesforce, scopes: [api]}
      - {id: erp, kind: erp, scopes: [api]}
      - {id: billing, kind: payments, scopes: [api]}
      - {id: wms, kind: warehouse, scopes: [api]}
    credentials:
      - {id: sf-cc, system: salesforce, protocol: oauth2_client_credentials, client_id: sf-client, scopes: [api],
         token_url: "https://login.salesforce.com/services/oauth2/token", principals: [{name: default}]}
      - {id: erp-key, system: erp, protocol: api_key_header, header: X-Api-Key, principals: [{name: default}]}
      - {id: billing-key, system: billing, protocol: api_key_header, header: X-Api-Key, principals: [{name: default}]}
      - {id: wms-key, system: wms, protocol: api_key_header, header: X-Api-Key, principals: [{name: default}]}
    named_credentials:
      - {id: sf-rest, credential: sf-cc, url: "https://acme.my.salesforce.com", api_version: v61.0}
      - {id: erp-api, credential: erp-key, url: "https://erp.acme.example/api"}
      - {id: billing-api, credential: billing-key, url: "https://billing.acme.example/v1"}
      - {id: wms-api, credential: wms-key, url: "https://wms.acme.example/api"}
    permission_sets:
      - id: sf-writer
        scopes: [api]
        api_types: [REST]
        grants:
          - named_credential: sf-rest
            principal: default
            methods: [GET, POST, PATCH, DELETE]
            paths: ["/services/data/*/sobjects/**", "/services/data/*/composite/**"]
      - id: account-upserter
        scopes: [api]
        api_types: [REST]
        grants:
          - named_credential: sf-rest
            principal: default
            methods: [POST, PATCH]
            paths: ["/services/data/*/sobjects/Account", "/services/data/*/sobjects/Account/Erp_Id__c/*",
                    "/services/data/*/sobjects/Task"]
      - id: everything
        scopes: [api]
        api_types: [REST]
        grants:
          - {named_credential: sf-rest, principal: default, methods: [POST, PATCH], paths: ["/services/data/*/sobjects/**"]}
          - {named_credential: erp-api, principal: default, methods: [POST], paths: ["/**"]}
          - {named_credential: billing-api, principal: default, methods: [POST], paths: ["/**"]}
          - {named_credential: wms-api, principal: default, methods: [POST], paths: ["/**"]}
    integration_users:
      - {id: loader, owner: data@acme.example, justification: loads contacts, ip_ranges: [10.0.0.0/24], scopes: [api],
         permission_sets: [sf-writer]}
      - {id: syncer, owner: erp@acme.example, justification: syncs accounts, ip_ranges: [10.0.0.0/24], scopes: [api],
         permission_sets: [account-upserter]}
      - {id: hub, owner: it@acme.example, justification: does it all, ip_ranges: [10.0.0.0/24], scopes: [api],
         permission_sets: [everything]}
      - {id: narrow, owner: it@acme.example, justification: writes a few objects, ip_ranges: [10.0.0.0/24],
         scopes: [api], permission_sets: [everything]}
    """)


@pytest.fixture
def landscape(services, runner, tmp_path):
    path = tmp_path / "governance.yaml"
    path.write_text(LANDSCAPE)
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output
    services.landscape.invalidate()
    return path


def _log(services, user: str, nc: str, method: str, path: str, times: list[dt.datetime]) -> None:
    """Decide the request with the real decider (it must be allowed) and record it at each time. The object is
    named as the proxy names it, except for the paths in BARE (older records, without it)."""
    obj = None if path in BARE else salesforce_object(path)
    request = AccessRequest(caller=Caller(integration_user=user, scopes=("api",), source_ip=IP), action="proxy",
                            named_credential=nc, method=method, path=path, resource_object=obj, api_type="REST")
    decision = services.decider.decide(request)
    assert decision.allowed, (request, decision)
    for at in times:
        services.decision_log.append(request, decision, at=at)


def _every(start: dt.datetime, n: int, seconds: float) -> list[dt.datetime]:
    return [start + dt.timedelta(seconds=i * seconds) for i in range(n)]


def _audit(services, runner, tmp_path) -> dict:
    assert services.decision_log.flush()
    out = tmp_path / "audit.json"
    result = runner.invoke(["audit", "--source", "govern", "--format", "json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_synchronous_bulk_bursts_of_single_record_writes(services, runner, landscape, tmp_path):
    day = NOW - dt.timedelta(days=2)
    # 201 single-record creates of Contact in under 7 minutes: more than the seed's 200, synchronously
    _log(services, "loader", "sf-rest", "POST", f"{SOBJ}/Contact", _every(day, 201, 2.0))
    # near misses: 200 Lead creates in 10 minutes (not more than 200)...
    _log(services, "loader", "sf-rest", "POST", f"{SOBJ}/Lead", _every(day + dt.timedelta(hours=1), 200, 2.9))
    # ...300 Case updates spread over an hour (at most 50 in any 10 minutes)...
    _log(services, "loader", "sf-rest", "PATCH", f"{SOBJ}/Case/500A", _every(day + dt.timedelta(hours=2), 300, 12.0))
    # ...and 300 Opportunity records in a minute through the Composite API (many records a call)
    _log(services, "loader", "sf-rest", "POST", "/services/data/v61.0/composite/sobjects",
         _every(day + dt.timedelta(hours=3), 300, 0.2))
    report = _audit(services, runner, tmp_path)

    bursts = _behaviour(report, "GOV-BEHAV-003")
    assert set(bursts) == {"loader/sf-rest/Contact"}, bursts
    ev = bursts["loader/sf-rest/Contact"]["evidence"]
    assert ev["writes"] == 201 and ev["methods"] == {"POST": 201} and ev["object"] == "Contact"
    assert dt.datetime.fromisoformat(ev["first"]) == day.replace(second=0)
    assert bursts["loader/sf-rest/Contact"]["severity"] == "high"


def test_insert_instead_of_upsert(services, runner, landscape, tmp_path):
    day = NOW - dt.timedelta(days=1)
    # Account has an external-id upsert path granted (Erp_Id__c): 25 POST creates are the anti-pattern
    _log(services, "syncer", "sf-rest", "POST", f"{SOBJ}/Account", _every(day, 25, 60.0))
    # near misses: Task has no upsert path; Account upserted through the external id is the right way
    _log(services, "syncer", "sf-rest", "POST", f"{SOBJ}/Task", _every(day, 40, 60.0))
    _log(services, "syncer", "sf-rest", "PATCH", f"{SOBJ}/Account/Erp_Id__c/E-1", _every(day, 5, 60.0))
    # and a few creates (under upsert_min_inserts, 20) of an object whose upsert path someone used
    _log(services, "loader", "sf-rest", "PATCH", f"{SOBJ}/Contact/Erp_Id__c/C-1", _every(day, 3, 60.0))
    _log(services, "loader", "sf-rest", "POST", f"{SOBJ}/Contact", _every(day, 19, 60.0))
    report = _audit(services, runner, tmp_path)

    inserts = _behaviour(report, "GOV-BEHAV-004")
    assert set(inserts) == {"syncer/sf-rest/Account"}, inserts
    ev = inserts["syncer/sf-rest/Account"]["evidence"]
    assert ev["inserts"] == 25 and ev["insert_paths"] == [f"{SOBJ}/Account"]
    assert any("Erp_Id__c" in p and "granted" in p for p in ev["upsert_paths"])
    assert dt.datetime.fromisoformat(ev["first"]) == day
    assert dt.datetime.fromisoformat(ev["last"]) == day + dt.timedelta(minutes=24)


def test_insert_instead_of_upsert_when_an_upsert_was_used(services, runner, landscape, tmp_path):
    """No grant names Contact's external id, but the log shows upserts of Contact: creates then are the pattern."""
    day = NOW - dt.timedelta(days=1)
    _log(services, "loader", "sf-rest", "PATCH", f"{SOBJ}/Contact/Erp_Id__c/C-1", _every(day, 3, 60.0))
    _log(services, "loader", "sf-rest", "POST", f"{SOBJ}/Contact", _every(day, 20, 60.0))
    inserts = _behaviour(_audit(services, runner, tmp_path), "GOV-BEHAV-004")
    assert set(inserts) == {"loader/sf-rest/Contact"}
    assert inserts["loader/sf-rest/Contact"]["evidence"]["upsert_paths"] == \
        [f"sf-rest: PATCH {SOBJ}/Contact/Erp_Id__c/… (used)"]


def test_god_integration(services, runner, landscape, tmp_path):
    day = NOW - dt.timedelta(days=1)
    # hub writes to four systems; narrow writes nine Salesforce objects and one other system (two systems)
    for nc in ("erp-api", "billing-api", "wms-api"):
        _log(services, "hub", nc, "POST", "/records", [day])
    _log(services, "hub", "sf-rest", "POST", f"{SOBJ}/Account", [day + dt.timedelta(hours=1)])
    objects = ["Account", "Contact", "Lead", "Case", "Task", "Event", "Order", "Quote", "Campaign"]
    for obj in objects:
        _log(services, "narrow", "sf-rest", "POST", f"{SOBJ}/{obj}", [day])
    _log(services, "narrow", "erp-api", "POST", "/orders", [day])
    # narrow only reads an extra object: reads do not count
    _log(services, "narrow", "sf-rest", "PATCH", f"{SOBJ}/Account/001A", [day])
    report = _audit(services, runner, tmp_path)

    gods = _behaviour(report, "GOV-BEHAV-005")
    assert set(gods) == {"hub"}, gods
    ev = gods["hub"]["evidence"]
    assert ev["systems"] == {"billing": 1, "erp": 1, "salesforce": 1, "wms": 1} and ev["writes"] == 4
    assert dt.datetime.fromisoformat(ev["last"]) == day + dt.timedelta(hours=1)

    # the stored run renders in every format, the behaviour findings with their rule's SARIF metadata
    for fmt in ("html", "csv", "sarif"):
        out = tmp_path / f"report.{fmt}"
        result = runner.invoke(["audit", "report", "--format", fmt, "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "GOV-BEHAV-005" in out.read_text()
    sarif = json.loads((tmp_path / "report.sarif").read_text())["runs"][0]
    rule = next(r for r in sarif["tool"]["driver"]["rules"] if r["id"] == "GOV-BEHAV-005")
    assert rule["properties"]["security-severity"] == "5.0" and "anti-pattern" in rule["properties"]["tags"]
    assert rule["helpUri"] == "docs/audit.md#gov-behav-005"
    (hub,) = [r for r in sarif["results"] if r["ruleId"] == "GOV-BEHAV-005"]
    assert hub["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("governance.yaml")


def test_god_integration_by_objects(services, runner, landscape, tmp_path):
    day = NOW - dt.timedelta(days=1)
    objects = ["Account", "Contact", "Lead", "Case", "Task", "Event", "Order", "Quote", "Campaign", "Contract"]
    for obj in objects:
        _log(services, "narrow", "sf-rest", "POST", f"{SOBJ}/{obj}", [day])
    gods = _behaviour(_audit(services, runner, tmp_path), "GOV-BEHAV-005")
    assert set(gods) == {"narrow"} and len(gods["narrow"]["evidence"]["objects"]) == 10


def test_testing_only_in_production(services, runner, landscape, tmp_path):
    day = NOW - dt.timedelta(days=1)
    _log(services, "loader", "sf-rest", "GET", f"{SOBJ}/Contact/003A", [day])
    _log(services, "hub", "erp-api", "POST", "/orders", [day])
    report = _audit(services, runner, tmp_path)
    prod = _behaviour(report, "GOV-BEHAV-006")
    # billing and wms took no calls: declared, but not in use, so not judged
    assert set(prod) == {"salesforce", "erp"}, prod
    assert prod["salesforce"]["evidence"]["users"] == ["loader"]
    assert prod["salesforce"]["evidence"]["hosts"] == ["acme.my.salesforce.com"]
    assert prod["salesforce"]["location"]["file"].endswith("governance.yaml")

    # the near miss: a Salesforce sandbox (by its host) and an ERP staging system (by its name) join the landscape
    twins = LANDSCAPE.replace("\ncredentials:\n", textwrap.dedent("""
          - {id: crm-uat, kind: salesforce, scopes: [api]}
          - {id: erp-staging, kind: erp, scopes: [api]}
        credentials:
          - {id: uat-cc, system: crm-uat, protocol: oauth2_client_credentials, client_id: sf-client, scopes: [api],
             token_url: "https://test.salesforce.com/services/oauth2/token", principals: [{name: default}]}
        """)).replace("\nnamed_credentials:\n", textwrap.dedent("""
        named_credentials:
          - {id: uat-rest, credential: uat-cc, url: "https://acme--uat.sandbox.my.salesforce.com"}
        """))
    assert "- {id: crm-uat" in twins and "- {id: uat-rest" in twins
    landscape.write_text(twins)
    assert runner.invoke(["apply", "-f", str(landscape)]).exit_code == 0
    assert _behaviour(_audit(services, runner, tmp_path), "GOV-BEHAV-006") == {}


def test_non_production_systems_are_recognised():
    from govern.audit.model import AuditModel, CredentialM, NamedCredentialM, SystemM
    from govern.audit.rules.behaviour import is_non_production

    m = AuditModel(source="govern", now=NOW)
    for sid, host in [("crm", "acme.my.salesforce.com"), ("crm2", "acme--dev.sandbox.my.salesforce.com"),
                      ("crm3", "test.salesforce.com"), ("erp-qa", "erp.acme.example"), ("pay", "staging.pay.example"),
                      ("contest", "contest.example")]:
        m.systems[sid] = SystemM(sid)
        m.credentials[f"{sid}-c"] = CredentialM(f"{sid}-c", sid)
        m.named_credentials[f"{sid}-n"] = NamedCredentialM(f"{sid}-n", f"{sid}-c", f"https://{host}/x")
    assert {s for s in m.systems if is_non_production(m, m.systems[s])} == {"crm2", "crm3", "erp-qa", "pay"}


def test_only_frequent_gets_have_their_gaps_measured():
    """The LAG runs over the GETs repeated on average at least once an hour (poll_candidate_seconds); a GET made
    now and then over the month is never sorted."""
    from govern.audit.model import AuditPolicy, RequestPattern, UsageM
    from govern.store.audit_loader import poll_candidates

    def shape(path, n, hours, method="GET"):
        return RequestPattern("api", method, path, None, "REST", (), n, NOW - dt.timedelta(hours=hours), NOW)

    usage = {"u": UsageM("u", patterns=[shape("/hourly", 61, 60), shape("/sparse", 61, 61), shape("/few", 59, 1),
                                        shape("/write", 500, 1, "POST")])}
    # the same path in two shapes (other scopes) counts together
    usage["u"].patterns += [shape("/split", 30, 5), shape("/split", 30, 2)]
    assert poll_candidates(usage, AuditPolicy()) == {"u": {("api", "/hourly"), ("api", "/split")}}


def test_a_write_in_the_last_microseconds_of_a_minute_counts_in_that_minute(services, runner, landscape, tmp_path):
    """SQLite keeps microseconds; its julianday() rounds to the millisecond, which moved 10:09:59.9996 into
    10:10 and out of the ten minutes (a burst of 201 read as 200). Both backends count it where it was made."""
    start = (NOW - dt.timedelta(days=2)).replace(minute=0, second=0)
    times = _every(start, 200, 2.9) + [start + dt.timedelta(minutes=9, seconds=59, microseconds=999600)]
    _log(services, "loader", "sf-rest", "POST", f"{SOBJ}/Contact", times)
    bursts = _behaviour(_audit(services, runner, tmp_path), "GOV-BEHAV-003")
    assert set(bursts) == {"loader/sf-rest/Contact"}, bursts
    assert bursts["loader/sf-rest/Contact"]["evidence"]["writes"] == 201
