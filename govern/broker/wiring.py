"""Builds the broker's authorization side and sets it on Services (called by govern.bootstrap only)."""
from __future__ import annotations

from govern.broker.authenticator import JwtCallerAuthenticator
from govern.broker.decision_keys import DecisionKeys, init_step
from govern.broker.decision_log import ChainedDecisionLog
from govern.broker.landscape import LandscapeCache
from govern.broker.signing_keys import SigningKeys
from govern.policy.decider import CedarPolicyDecider
from govern.policy.guardrails import load_guardrails, policies_directory


def build_authorization(services) -> None:
    settings = services.settings
    landscape = LandscapeCache(services.sessions, services.clock)
    keys = SigningKeys(services.sessions, lambda: services.secret_store, services.clock,
                       token_lifetime_seconds=settings.access_token_lifetime_seconds,
                       leeway_seconds=settings.token_leeway_seconds)
    services.landscape = landscape
    services.signing_keys = keys
    services.authenticator = JwtCallerAuthenticator(keys, landscape, services.clock, issuer=settings.issuer,
                                                    trusted_proxies=settings.trusted_proxy_networks)
    services.decider = CedarPolicyDecider(landscape, services.clock,
                                          lambda: load_guardrails(policies_directory(settings)),
                                          min_ipv4_prefix=settings.min_ipv4_prefix,
                                          min_ipv6_prefix=settings.min_ipv6_prefix)
    # Not ready while the guardrails cannot be loaded: every token and proxy call would answer 500.
    services.health_checks["policies"] = lambda: services.decider.guardrails
    decision_keys = DecisionKeys(services.sessions, lambda: services.secret_store, services.clock,
                                 cache=services.cache, cipher_provider=lambda: services.cache_cipher)
    services.decision_keys = decision_keys
    services.init_steps.append(init_step)
    services.decision_log = ChainedDecisionLog(services.engine, services.clock, decision_keys)
    # First closer: the log flushes before anything it needs (the engine) is disposed.
    services.closers.insert(0, services.decision_log.close)
