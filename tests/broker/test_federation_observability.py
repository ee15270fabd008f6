"""Federation observability (#21; docs/federation.md "Observability"): /metrics counts JWKS fetches per issuer by
outcome and client-assertion outcomes by reason, observed over HTTP against the real local issuer
(tests/fakes/oidc_issuer.py); and the audit flags a trust that fetches an issuer's keys over plain http from
another host (GOV-FED-004), through `govern apply` and `govern audit`."""
from __future__ import annotations

import json
import re

import pytest

from tests.broker.test_federation import (CLAIMS, SUBJECT, USER, exchange, federated_user, issuer, mint,  # noqa: F401
                                          refused, token_url, world)
from tests.config_as_code.world import find


def scrape(world) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The federation samples of /metrics: (name, sorted labels) -> value."""
    body = world.client.get("/metrics").get_data(as_text=True)
    out = {}
    for line in body.splitlines():
        m = re.match(r'^(govern_federation_\w+_total)\{(.*)\} (\S+)$', line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def fetches(world, issuer, outcome: str) -> float:
    return scrape(world).get(("govern_federation_jwks_fetches_total",
                              (("issuer", issuer.url), ("outcome", outcome))), 0.0)


def assertions(world, reason: str) -> float:
    return scrape(world).get(("govern_federation_assertions_total", (("reason", reason),)), 0.0)


def test_jwks_fetches_are_counted_per_issuer_by_outcome(world, issuer):
    assert exchange(world, mint(world, issuer)).status_code == 200
    assert fetches(world, issuer, "ok") == 1 == issuer.jwks_requests
    for i in range(3):  # unknown kids within the refetch interval: limited, no fetch
        refused(exchange(world, mint(world, issuer, header={"kid": f"made-up-{i}"})))
    assert fetches(world, issuer, "refetch_limited") == 3 and issuer.jwks_requests == 1
    world.clock.advance(31)
    issuer.rotate(keep_old=False)  # a new kid past the interval: one fetch, counted ok
    assert exchange(world, mint(world, issuer)).status_code == 200
    assert fetches(world, issuer, "ok") == 2 == issuer.jwks_requests
    world.clock.advance(301)  # the cached document has expired and the issuer is down
    assertion = mint(world, issuer)
    issuer.stop()
    assert exchange(world, assertion).status_code == 200  # the keys held serve until twice the lifetime...
    assert fetches(world, issuer, "error") == 1
    assert exchange(world, mint(world, issuer)).status_code == 200
    assert fetches(world, issuer, "refetch_limited") == 4  # ...without a fetch per request
    assert assertions(world, "jwks_unavailable") == 0


def test_assertion_outcomes_are_counted_by_reason(world, issuer):
    assert exchange(world, mint(world, issuer)).status_code == 200
    replayed = mint(world, issuer, jti="counted-once")
    assert exchange(world, replayed).status_code == 200
    refused(exchange(world, replayed))
    refused(exchange(world, mint(world, issuer, aud="https://some-other-service.example.com")))
    refused(exchange(world, mint(world, issuer, lifetime=-120)))
    refused(exchange(world, mint(world, issuer, claims={**CLAIMS, "ref": "refs/heads/feature-x"})))
    refused(exchange(world, mint(world, issuer, sub="repo:acme/shop:pull_request")))
    forged = issuer.mint(SUBJECT, token_url(world), claims=dict(CLAIMS), now=world.clock.now().timestamp(),
                         key=issuer._new_key(), header={"kid": issuer.signing_key.kid})
    refused(exchange(world, forged))
    counted = {labels[0][1]: value for (name, labels), value in scrape(world).items()
               if name == "govern_federation_assertions_total"}
    assert counted == {"ok": 2, "replayed": 1, "audience": 1, "expired": 1, "claim": 1, "subject": 1,
                       "signature": 1}, counted
    # the counters hold reasons, never a token or a subject
    body = world.client.get("/metrics").get_data(as_text=True)
    assert SUBJECT not in body and forged not in body


@pytest.mark.parametrize("jwks_url, flagged", [
    ("http://issuer.example.com/.well-known/jwks", True),
    ("http://10.0.0.5:8080/jwks", True),
    ("https://token.actions.githubusercontent.com/.well-known/jwks", False),
    ("http://127.0.0.1:9000/jwks", False),
    ("http://localhost:9000/jwks", False),
    ("http://[::1]:9000/jwks", False),
])
def test_the_audit_flags_a_plain_http_jwks_url_outside_loopback(world, issuer, runner, tmp_path, jwks_url, flagged):
    import yaml

    user = find(world.doc, "integration_users", USER)
    user["trust"]["issuers"] = [{"issuer": "https://ci.example.com", "jwks_url": jwks_url, "algorithms": ["RS256"]}]
    path = tmp_path / "governance.yaml"
    path.write_text(yaml.safe_dump(world.doc, sort_keys=False))
    applied = runner.invoke(["apply", "-f", str(path)])
    assert applied.exit_code == 0, applied.output
    out = tmp_path / "audit.json"
    assert runner.invoke(["audit", "--out", str(out)]).exit_code == 0
    found = [f for f in json.loads(out.read_text())["findings"] if f["rule_id"] == "GOV-FED-004"]
    if not flagged:
        assert found == []
        return
    assert len(found) == 1 and found[0]["subject"] == USER and found[0]["severity"] == "high", found
    assert found[0]["evidence"] == {"issuer": "https://ci.example.com", "jwks_url": jwks_url}
    # fixed with https, the finding goes
    user["trust"]["issuers"][0]["jwks_url"] = jwks_url.replace("http://", "https://")
    path.write_text(yaml.safe_dump(world.doc, sort_keys=False))
    assert runner.invoke(["apply", "-f", str(path)]).exit_code == 0
    assert runner.invoke(["audit", "--out", str(out)]).exit_code == 0
    assert not [f for f in json.loads(out.read_text())["findings"] if f["rule_id"] == "GOV-FED-004"]
