"""Least-privilege rules as pure functions (seed practice 7): path patterns, object/field permissions,
source IPs and CIDR ranges, scopes. No framework, no database: the broker and the audit both use them.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from typing import Iterable, Mapping, Sequence

# One glob implementation for the broker, the proxy and the audit's replay, so that what the audit proves
# is what the broker enforces.
from govern.domain.paths import any_path_matches, method_allowed, path_matches  # noqa: F401 - re-exported

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Salesforce REST: /services/data/v60.0/sobjects/Account/001.../  (the object is the segment after sobjects)
_SOBJECT_PATH = re.compile(r"^/services/data/v\d+(?:\.\d+)?/sobjects/([A-Za-z0-9_]+)(?:/|$)")

# HTTP method -> the Salesforce object permission it needs.
_METHOD_PERMISSION = {"GET": "read", "HEAD": "read", "POST": "create", "PATCH": "edit", "PUT": "edit",
                      "DELETE": "delete"}


def salesforce_object(path: str | None) -> str | None:
    if not path:
        return None
    m = _SOBJECT_PATH.match(path)
    return m.group(1) if m else None


def object_access_allowed(objects: Mapping[str, dict], obj: str, method: str, fields: Iterable[str]) -> bool:
    """Salesforce-style object and field permissions of one grant.

    The method names the object permission it needs (GET read, POST create, PATCH/PUT edit, DELETE
    delete); `modify_all` implies every permission and `view_all` implies read. Each field named by the
    request needs `read` (for reads) or `edit` (for writes) in the object's `fields` map.
    """
    perms = objects.get(obj)
    if perms is None:
        return False
    needed = _METHOD_PERMISSION.get(method.upper(), "edit")
    if not (perms.get(needed) or perms.get("modify_all") or (needed == "read" and perms.get("view_all"))):
        return False
    field_perms = perms.get("fields") or {}
    for name in fields:
        level = field_perms.get(name)
        if level is None:
            return False
        if needed != "read" and level != "edit":
            return False
    return True


@functools.lru_cache(maxsize=4096)
def parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    nets = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(c.strip(), strict=False))
        except ValueError:
            continue  # a malformed range allows nothing
    return tuple(nets)


def shortest_prefix(cidrs: Sequence[str], version: int) -> int:
    """The shortest prefix length among `cidrs` of IP `version`; one more than the longest possible (33 or
    129) when there is none. A malformed range counts as allowing nothing (as in `parse_networks`)."""
    lengths = [net.prefixlen for net in parse_networks(tuple(cidrs)) if net.version == version]
    return min(lengths, default=33 if version == 4 else 129)


def broad_ranges(cidrs: Sequence[str], min_ipv4_prefix: int, min_ipv6_prefix: int) -> list[str]:
    """The ranges of `cidrs` with a prefix shorter than the minimum of their IP version: `0.0.0.0/1` opens
    half of the IPv4 space and is as broad, for a guardrail, as `0.0.0.0/0`."""
    broad = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            continue
        if net.prefixlen < (min_ipv4_prefix if net.version == 4 else min_ipv6_prefix):
            broad.append(cidr)
    return broad


def ip_in_ranges(ip: str, cidrs: Sequence[str]) -> bool:
    """True when `ip` lies inside one of `cidrs`. An empty list allows nothing (deny by default)."""
    return _ip_in_ranges(ip, tuple(cidrs))


@functools.lru_cache(maxsize=65536)
def _ip_in_ranges(ip: str, cidrs: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if getattr(addr, "ipv4_mapped", None):
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in parse_networks(cidrs))


def resolve_source_ip(peer: str, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The client's address: the socket peer, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (the entry the nearest proxy
    appended) and the first address that is not itself a trusted proxy is the client. Entries further
    left were written by the client and can be forged, so they are never believed. X-Forwarded-For from
    an untrusted peer is ignored entirely.
    """
    if not forwarded_for or not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain: fall back to the peer, never to a guess
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _in(ip: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr.version == n.version and addr in n for n in networks)


def parse_scopes(raw: str | Iterable[str] | None) -> tuple[str, ...]:
    """RFC 6749 section 3.3: a space-delimited list; order and duplicates carry no meaning."""
    if raw is None:
        return ()
    items = raw.split() if isinstance(raw, str) else [s for part in raw for s in str(part).split()]
    return tuple(sorted(set(items)))
