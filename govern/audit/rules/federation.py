"""Federated trust that is too broad (workload identity federation, docs/federation.md).

A federated integration user accepts any token its issuers sign that matches its trust. GitHub Actions signs a
token for every workflow run in every repository, and a Kubernetes cluster for every pod: what narrows that to
one workload is the trust's subject, claims and audience. A wildcard there admits workloads nobody reviewed.
"""
from __future__ import annotations

from govern.audit.model import AuditModel
from govern.audit.registry import Hit, rule
from govern.domain.federation import branch_wildcard, plain_http_outside_loopback, wildcard_subject

S7_LEAST = '§7 Apply the Principle of Least Privilege: "Every integration should have the minimum permissions needed"'


def _federated(model: AuditModel):
    for u in model.users.values():
        if u.trust is not None:
            yield u, u.trust


@rule("GOV-FED-001", "Federated trust with a wildcard subject", "high", rationale=S7_LEAST,
      remediation="Name the one subject the workload's tokens carry (e.g. repo:ORG/REPO:environment:production, "
                  "system:serviceaccount:NAMESPACE:NAME) instead of a pattern with `*`.")
def wildcard_subjects(model: AuditModel):
    for u, trust in _federated(model):
        if wildcard_subject(trust):
            yield Hit("integration_user", u.id, f"{u.id} trusts any subject matching {trust.subject!r}",
                      {"subject": trust.subject})


@rule("GOV-FED-002", "Federated trust without an audience", "medium", rationale=S7_LEAST,
      remediation="Set `audience:` in the trust to the value the workload requests its token for (the GitHub "
                  "Actions `audience` input, the projected token's `audience`), and use it for govern only.")
def missing_audience(model: AuditModel):
    """Without `audience:` govern accepts tokens minted for its token URL, which follows GOVERN_PUBLIC_URL: the trust
    then depends on a deployment setting rather than on the file, and a renamed URL silently changes it."""
    for u, trust in _federated(model):
        if trust.audience is None:
            yield Hit("integration_user", u.id, f"{u.id}'s trust names no audience (govern's token URL is assumed)",
                      {"issuers": [i.issuer for i in trust.issuers]})


@rule("GOV-FED-003", "Federated trust with a branch wildcard on ref", "high", rationale=S7_LEAST,
      remediation="Require the protected branch or tag itself (ref: refs/heads/main) or, better, a deployment "
                  "environment with required reviewers (environment: production).")
def branch_wildcards(model: AuditModel):
    """Anyone who can push a branch can then run a workflow that receives this user's access."""
    for u, trust in _federated(model):
        ref = branch_wildcard(trust)
        if ref is not None:
            yield Hit("integration_user", u.id, f"{u.id} trusts tokens from any ref matching {ref!r}", {"ref": ref})


S6_TLS = ('§6 Use Named Credentials: "Store all external endpoints in Named Credentials" — and the keys that stand '
          'in for a federated user\'s secret must not cross the network in clear text')


@rule("GOV-FED-004", "Federated trust fetches the issuer's keys over plain http", "high", rationale=S6_TLS,
      remediation="Use the issuer's https:// JWKS URL (GitHub Actions, Kubernetes and SPIFFE bundles are served "
                  "over TLS), or give its public keys inline with `jwks:`.")
def plain_http_jwks(model: AuditModel):
    """Whoever can answer for that URL on the network path (a proxy, a spoofed DNS name) serves govern keys of
    their own, and then signs tokens govern accepts as this user. A loopback URL never leaves the machine."""
    for u, trust in _federated(model):
        for issuer in trust.issuers:
            if issuer.jwks_url is not None and plain_http_outside_loopback(issuer.jwks_url):
                yield Hit("integration_user", u.id, f"{u.id} fetches the keys of {issuer.issuer} over plain http",
                          {"issuer": issuer.issuer, "jwks_url": issuer.jwks_url})
