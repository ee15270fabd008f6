"""PolicyDecider: deny by default, permission sets permit, guardrails forbid, a forbid always wins.

1. The caller must be an active integration user inside its IP ranges (re-checked here, not only at
   authentication: the decision must stand on its own).
2. The permission-set grants of the caller's *live* assignments are matched (govern.domain.access_rules):
   named credential, API type, method and path pattern, Salesforce object and field permissions, and
   the scopes (within the permission-set scopes ∩ the caller's token scopes). No match: a denial naming
   the most specific reason (`deny:assignment_expired`, `deny:scope_outside_grant`, ..., `deny:default`).
3. Access conditions (govern.policy.conditions): a permitting set with `conditions:` permits only while they hold
   (time window, request rate, source range); the ones that do not hold enter Cedar as `context.conditions`, and
   `050_access_conditions.cedar` denies naming them (`condition:time_window`, ...). A user with such a set is
   decided afresh on every request (no memo).
4. The guardrails in `policies/` are evaluated by Cedar with the grant outcome as `context.permitted`;
   a `forbid` wins, and the denial names it: `forbid:<policy @id>`.

The Cedar policy set is parsed once (govern.policy.guardrails) and the entity store is built once per
landscape snapshot and day (assignments expire by date); per request only the context is new.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading

import cedarpy

from govern.domain.access import PROXY_ONLY_RULE, AccessDecision, AccessRequest
from govern.domain.access_rules import (any_path_matches, ip_in_ranges, method_allowed, object_access_allowed,
                                        parse_networks, salesforce_object, shortest_prefix)
from govern.errors import NotFound
from govern.policy.conditions import (CONDITION_PREFIX, CONDITION_RULES, CONDITIONS_REASON, ConditionEvaluator,
                                     MinuteCounter)
from govern.ports import Clock

log = logging.getLogger("govern.policy")
MEMO_MAX = 50_000


def _ip(value: str) -> dict:
    return {"__extn": {"fn": "ip", "arg": value}}


class CedarPolicyDecider:
    def __init__(self, landscape, clock: Clock, guardrails_loader, *, min_ipv4_prefix: int = 8, min_ipv6_prefix: int = 32,
                 rate_counter: MinuteCounter | None = None):
        self._landscape = landscape
        self._min_prefix = (min_ipv4_prefix, min_ipv6_prefix)
        self._clock = clock
        self._load = guardrails_loader
        self._guardrails = None
        self._lock = threading.Lock()
        self._conditions = ConditionEvaluator(rate_counter)

    @property
    def guardrails(self):
        if self._guardrails is None:
            with self._lock:
                if self._guardrails is None:
                    self._guardrails = self._load()
        return self._guardrails

    def reload_policies(self) -> None:
        with self._lock:
            self._guardrails = self._load()

    # --- the decision ------------------------------------------------------------------------

    def decide(self, request: AccessRequest) -> AccessDecision:
        snap = self._landscape.current()
        if snap.named_credential(request.named_credential) is None:  # raises a stored row's error
            snap = self._landscape.recheck()  # created since the snapshot? look once more
        if snap.named_credential(request.named_credential) is None:
            raise NotFound(f"no named credential {request.named_credential!r}")
        today = self._clock.now().date()
        # A decision is a pure function of (snapshot, day, policy set, request): identical requests are
        # answered from a bounded per-snapshot memo; any landscape change makes a new snapshot.
        guardrails = self.guardrails
        memo = snap.derive(("decisions", id(guardrails)), dict)
        caller = request.caller
        key = (today, caller.integration_user, caller.scopes, caller.source_ip, request.action,
               request.named_credential, request.scopes, request.method, request.path, request.resource_object,
               request.fields, request.api_type)
        if caller.integration_user in self._conditioned(snap, today):
            # Access conditions depend on the time, the request count and the address: decided afresh each time.
            return self._decide(snap, today, request)
        found = memo.get(key)
        if found is not None:
            return found
        decision = self._decide(snap, today, request)
        if len(memo) >= MEMO_MAX:
            memo.clear()
        memo[key] = decision
        return decision

    def _decide(self, snap, today: dt.date, request: AccessRequest) -> AccessDecision:
        caller = request.caller
        nc = snap.named_credentials[request.named_credential]
        user = snap.users.get(caller.integration_user)
        if user is None:
            return _deny("deny:default", "the caller is not a known integration user")
        if user.status != "active":
            return _deny(f"deny:user_{user.status}", f"the integration user is {user.status}")
        if not ip_in_ranges(caller.source_ip, user.cidrs):
            return _deny("deny:ip_outside_ranges", "the source address is outside the integration user's IP ranges")

        assignments = snap.assignments.get(user.external_id, ())
        live = [a.permission_set for a in assignments if a.live_on(today)]
        candidates = [(ps, g) for ps in live for g in ps.grants if g.named_credential == nc.external_id]
        if not candidates:
            expired = any(g.named_credential == nc.external_id for a in assignments if not a.live_on(today)
                          for g in a.permission_set.grants)
            if expired:
                return _deny("deny:assignment_expired", "the assignment that granted this named credential has expired")
            return _deny("deny:default", "no permission set grants this named credential")

        api_type = request.api_type or nc.api_type
        candidates = [(ps, g) for ps, g in candidates
                      if not ps.api_types or api_type.lower() in {t.lower() for t in ps.api_types}]
        if not candidates:
            return _deny("deny:api_type_not_granted", f"no permission set grants the {api_type} API")

        if request.method or request.path:
            candidates = [(ps, g) for ps, g in candidates if _operation_allowed(g, request)]
            if not candidates:
                return _deny("deny:operation_not_granted", "no grant covers this method, path, object or fields")

        permitting = list(dict.fromkeys(ps for ps, _ in candidates))
        # Sets whose access conditions do not hold stop permitting here, before their scopes are counted.
        permitting, violated = self._conditions.evaluate(permitting, caller.integration_user, caller.source_ip,
                                                         self._clock.now())
        # Scopes only narrow: the permission sets' scopes, the access token's scopes, the user's allowed scopes
        # (which may have shrunk since the token was issued) and the credential's scopes all bound what the
        # upstream token holds.
        grantable = {s for ps in permitting for s in ps.scopes} & set(caller.scopes) & set(user.allowed_scopes)
        if nc.default_scopes:  # and the credential's own scopes bound what govern asks of that upstream
            grantable &= set(nc.default_scopes)
        if request.scopes:
            if not set(request.scopes) <= grantable:
                return _deny("deny:scope_outside_grant",
                             "a requested scope is outside the permission sets and the access token's scopes")
            granted = tuple(sorted(request.scopes))
            permitting = [ps for ps in permitting if set(ps.scopes) & set(granted)] or permitting
        else:
            granted = tuple(sorted(grantable))
            if not granted and nc.issues_tokens and (nc.default_scopes or any(ps.scopes for ps in permitting)):
                # An empty intersection is a denial, never "the credential's default scopes".
                return _deny("deny:no_grantable_scope",
                             "no scope is granted by the permission sets, held by the access token and allowed "
                             "for the integration user")

        grant = next(g for ps, g in candidates if ps in permitting)
        if nc.principal_type == "per_user":
            principal = nc.per_user_principals.get(user.external_id)
            if principal is None:
                return _deny("deny:principal_not_connected",
                             "the integration user has no connected principal for this credential")
        else:
            principal = grant.principal or (nc.named_principals[0] if nc.named_principals else None)

        lifetime = min(ps.max_token_lifetime_seconds for ps in permitting)
        rules = tuple(f"permit:{ps.external_id}" for ps in permitting)
        forbids = self._guardrail_forbids(snap, today, request, user, nc, permitting, granted, lifetime,
                                          api_type, principal, violated)
        if forbids is None and violated:
            # The condition policy (050_access_conditions.cedar) is missing from a custom policies directory:
            # a condition that does not hold still denies.
            forbids = (tuple(sorted(violated)), CONDITIONS_REASON)
        if forbids is not None:
            return _deny(*forbids)
        if request.action == "token" and not nc.issues_tokens:
            # A static secret (basic, API key, custom header) never leaves govern: only the proxy uses it. Told
            # only to a caller the grants and guardrails would otherwise allow.
            return _deny(PROXY_ONLY_RULE, "this named credential holds a static secret; call it through the proxy")
        return AccessDecision(allowed=True, rules=rules, reason="permitted by the permission sets",
                              scopes_granted=granted, principal=principal, max_token_lifetime_seconds=lifetime,
                              allow_budget_overdraft=any(ps.allow_budget_overdraft for ps in permitting))

    # --- Cedar guardrails -----------------------------------------------------------------------

    def _entities(self, snap, today: dt.date):
        def build():
            entities = []
            for ps in snap.permission_sets.values():
                entities.append({"uid": {"type": "PermissionSet", "id": ps.external_id}, "parents": [], "attrs": {
                    "scopes": list(ps.scopes), "api_types": list(ps.api_types),
                    "system_permissions": list(ps.system_permissions),
                    "max_token_lifetime_seconds": ps.max_token_lifetime_seconds}})
            for user in snap.users.values():
                live = [a.permission_set for a in snap.assignments.get(user.external_id, ()) if a.live_on(today)]
                entities.append({"uid": {"type": "IntegrationUser", "id": user.external_id},
                                 "parents": [{"type": "PermissionSet", "id": ps.external_id} for ps in live],
                                 "attrs": {
                                     "status": user.status,
                                     "cidrs": [_ip(str(n)) for n in parse_networks(tuple(user.cidrs))],
                                     "shortest_ipv4_prefix": shortest_prefix(user.cidrs, 4),
                                     "shortest_ipv6_prefix": shortest_prefix(user.cidrs, 6),
                                     "allowed_scopes": list(user.allowed_scopes),
                                     "system_permissions": sorted({p for ps in live for p in ps.system_permissions}),
                                     "grant_scopes": sorted({s for ps in live for s in ps.scopes}),
                                     "max_token_lifetime_seconds": max((ps.max_token_lifetime_seconds for ps in live),
                                                                       default=0)}})
            for nc in snap.named_credentials.values():
                entities.append({"uid": {"type": "NamedCredential", "id": nc.external_id}, "parents": [],
                                 "attrs": {"credential": nc.credential, "api_type": nc.api_type}})
            return cedarpy.Entities.from_json_str(json.dumps(entities), schema=self.guardrails.schema)

        return snap.derive(("cedar-entities", today, id(self.guardrails)), build)

    def _conditioned(self, snap, today: dt.date) -> frozenset[str]:
        """The integration users with a live permission set that carries access conditions."""
        return snap.derive(("conditioned-users", today), lambda: frozenset(
            user for user, assignments in snap.assignments.items()
            if any(a.permission_set.conditions is not None and a.live_on(today) for a in assignments)))

    def _guardrail_forbids(self, snap, today, request, user, nc, permitting, granted, lifetime, api_type, principal,
                           violated=frozenset()):
        guardrails = self.guardrails
        permitted_by = tuple(ps.external_id for ps in permitting)
        method = (request.method or "").upper()
        obj = request.resource_object or salesforce_object(request.path) or ""
        context = {
            "permitted": True,
            "permitted_by": list(permitted_by),
            "source_ip": _ip(request.caller.source_ip),
            "scopes_requested": list(request.scopes),
            "scopes_granted": list(granted),
            "token_lifetime_seconds": lifetime,
            "method": method,
            "path": request.path or "",
            "object": obj,
            "fields": list(request.fields),
            "api_type": api_type,
            "principal": principal or "",
            "min_ipv4_prefix": self._min_prefix[0],
            "min_ipv6_prefix": self._min_prefix[1],
            # The permission sets' access conditions that do not hold (govern.policy.conditions).
            "conditions": {name: rule in violated for name, rule in CONDITION_RULES.items()},
        }
        return self._evaluate(guardrails, snap, today, request, user, nc, context)

    def _evaluate(self, guardrails, snap, today, request, user, nc, context):
        result = cedarpy.is_authorized({
            "principal": {"type": "IntegrationUser", "id": user.external_id},
            "action": {"type": "Action", "id": request.action},
            "resource": {"type": "NamedCredential", "id": nc.external_id},
            "context": context,
        }, guardrails.policy_set, self._entities(snap, today))
        if result.allowed:
            return None
        diagnostics = result.diagnostics
        if diagnostics.errors:
            # A guardrail that cannot be evaluated denies (fail closed), and says so.
            log.error("guardrail evaluation failed", extra={"errors": diagnostics.errors[:3]})
            return ("deny:guardrail_error", "a guardrail policy could not be evaluated")
        names = diagnostics.id_annotations_by_reason
        ids = sorted(names.get(r, r) for r in diagnostics.reasons)
        if not ids:
            return ("deny:default", "the guardrails did not permit this request")
        conditions = tuple(i for i in ids if i.startswith(CONDITION_PREFIX))
        if conditions:  # a condition names itself (condition:time_window), ahead of any guardrail
            return (*conditions, *(f"forbid:{i}" for i in ids if i not in conditions)), CONDITIONS_REASON
        return (*(f"forbid:{i}" for i in ids),), "forbidden by a guardrail policy"


def _operation_allowed(grant, request: AccessRequest) -> bool:
    method = (request.method or "GET").upper()
    if not method_allowed(grant.methods, method):
        return False
    path = request.path or "/"
    if grant.paths and not any_path_matches(grant.paths, path):
        return False
    if grant.objects:
        obj = request.resource_object or salesforce_object(path)
        if obj is not None and not object_access_allowed(grant.objects, obj, method, request.fields):
            return False
    return True


def _deny(rules, reason: str) -> AccessDecision:
    if isinstance(rules, str):
        rules = (rules,)
    return AccessDecision(allowed=False, rules=tuple(rules), reason=reason)
