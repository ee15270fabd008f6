"""Builds the broker's authorization side and sets it on Services (called by govern.bootstrap only).

With govern.broker.upstream.build_upstream_tokens and govern.broker.proxy.build_proxy, this is the broker's
part of the composition root: the only broker modules that hand the store's repositories (govern.store,
behind the Protocols in govern.ports) to the services."""
from __future__ import annotations

from typing import Any

from govern.broker.authenticator import JwtCallerAuthenticator
from govern.broker.decision_keys import DecisionKeys, init_step
from govern.broker.decision_log import ChainedDecisionLog
from govern.broker.landscape import LandscapeCache
from govern.broker.signing_keys import SigningKeys
from govern.policy.decider import CedarPolicyDecider
from govern.policy.guardrails import load_guardrails, policies_directory
from govern.store.decision_keys import DecisionKeyRepo
from govern.store.decision_records import DecisionRecordRepo
from govern.store.signing_keys import SigningKeyRepo


def build_authorization(services: Any) -> None:
    settings = services.settings
    landscape = LandscapeCache(services.sessions, services.clock)
    keys = SigningKeys(SigningKeyRepo(services.sessions), lambda: services.secret_store, services.clock,
                       token_lifetime_seconds=settings.access_token_lifetime_seconds,
                       leeway_seconds=settings.token_leeway_seconds)
    services.landscape = landscape
    services.signing_keys = keys
    services.authenticator = JwtCallerAuthenticator(keys, landscape, services.clock, issuer=settings.issuer,
                                                    trusted_proxies=settings.trusted_proxy_networks)
    decider = CedarPolicyDecider(landscape, services.clock,
                                 lambda: load_guardrails(policies_directory(settings)),
                                 min_ipv4_prefix=settings.min_ipv4_prefix,
                                 min_ipv6_prefix=settings.min_ipv6_prefix,
                                 # access-condition rates are counted where every process sees them (Redis or the
                                 # database); only a cache in this process's memory means one process
                                 rate_counter=services.cache if services.cache.kind != "memory" else None)
    services.decider = decider
    # Not ready while the guardrails cannot be loaded: every token and proxy call would answer 500.
    services.health_checks["policies"] = lambda: decider.guardrails
    decision_keys = DecisionKeys(DecisionKeyRepo(services.sessions), lambda: services.secret_store, services.clock,
                                 cache=services.cache, cipher_provider=lambda: services.cache_cipher)
    services.decision_keys = decision_keys
    services.init_steps.append(lambda _services: init_step(decision_keys))  # init steps take Services
    decision_log = ChainedDecisionLog(DecisionRecordRepo(services.engine), services.clock, decision_keys)
    services.decision_log = decision_log
    # First closer: the log flushes before anything it needs (the engine) is disposed.
    services.closers.insert(0, decision_log.close)
