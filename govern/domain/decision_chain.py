"""The decision log's chain: each record's `hash` covers a canonical JSON of its fields and the previous
record's hash, so an edited, inserted or deleted record breaks the chain.

Keyed records (`key_id` set) carry HMAC-SHA256 (RFC 2104) under a key held in the secret store: someone
who can write the table but not read the key cannot recompute the chain after an edit. Records written
before the chain was keyed (`key_id` NULL) keep their plain SHA-256 over the fields of that time; once a
keyed record appears every later one must be keyed (a downgrade is a break).

Records carry consecutive ids (assigned by the writer under the chain lock), so a deleted record shows as a
gap. A deleted *tail* shows against a checkpoint: a signed statement "record N had hash H" written every
few records (`checkpoint_mac`), and exported with `govern log checkpoint` to be kept elsewhere.

Canonical JSON: sorted keys, no whitespace, UTF-8, timestamps as ISO 8601 UTC with microseconds.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Iterable, Mapping

GENESIS = "0" * 64

# The fields of the first, unkeyed records (their hash covers exactly these).
LEGACY_FIELDS = ("id", "at", "correlation_id", "integration_user", "action", "named_credential", "principal",
                 "method", "path", "resource_object", "api_type", "scopes_requested", "scopes_granted",
                 "source_ip", "allowed", "rules", "upstream_status", "latency_ms")
HASHED_FIELDS = LEGACY_FIELDS + ("outcome", "error_code", "key_id")
OUTCOMES = ("allow", "deny", "error")

_LIST_FIELDS = ("scopes_requested", "scopes_granted", "rules")
_SORTED_LEGACY = tuple(sorted(LEGACY_FIELDS))
_SORTED_FIELDS = tuple(sorted(HASHED_FIELDS))


def derive_outcome(allowed: bool, upstream_status: int | None, error_code: str | None = None) -> str:
    """deny when refused; error when allowed but it failed (a govern error, or the upstream answered 5xx)."""
    if not allowed:
        return "deny"
    if error_code or (upstream_status is not None and upstream_status >= 500):
        return "error"
    return "allow"


def _timestamp(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(record: Mapping[str, Any], names: tuple[str, ...] | None = None) -> bytes:
    # Built in sorted key order, so json.dumps need not sort (the same bytes as sort_keys=True).
    if names is None:
        names = _SORTED_FIELDS if record.get("key_id") else _SORTED_LEGACY
    fields = {k: record.get(k) for k in names}
    if isinstance(fields["at"], dt.datetime):
        fields["at"] = _timestamp(fields["at"])
    for key in _LIST_FIELDS:
        value = fields[key]
        if isinstance(value, tuple):
            fields[key] = list(value)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: Mapping[str, Any], prev_hash: str) -> str:
    """The unkeyed hash of a record written before the chain was keyed."""
    h = hashlib.sha256()
    h.update(canonical_json(record, _SORTED_LEGACY))
    h.update(prev_hash.encode("ascii"))
    return h.hexdigest()


# The key id of a record written while the secret store (and so the chain key) could not be read: govern's
# degraded mode keeps answering and recording (seed practice 2). Such a record carries a plain SHA-256 over
# all its fields; it is protected by the next signed checkpoint, and `govern log verify` names the ones that
# no checkpoint covers yet.
STORE_DOWN_KEY_ID = "store-down"


def record_digest(record: Mapping[str, Any], prev_hash: str) -> str:
    """The unkeyed SHA-256 of a record written while the chain key could not be read."""
    h = hashlib.sha256()
    h.update(canonical_json(record, _SORTED_FIELDS))
    h.update(prev_hash.encode("ascii"))
    return h.hexdigest()


def record_mac(record: Mapping[str, Any], prev_hash: str, key: bytes) -> str:
    """HMAC-SHA256 (RFC 2104) of a keyed record and the previous record's hash."""
    mac = hmac.new(key, canonical_json(record, _SORTED_FIELDS), hashlib.sha256)
    mac.update(prev_hash.encode("ascii"))
    return mac.hexdigest()


def checkpoint_mac(checkpoint: Mapping[str, Any], key: bytes) -> str:
    message = json.dumps({"head_hash": checkpoint["head_hash"], "head_id": checkpoint["head_id"],
                          "key_id": checkpoint["key_id"], "at": _timestamp(checkpoint["at"]),
                          "kind": "govern-decision-checkpoint"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    records: int
    broken_at: int | None = None
    problem: str = ""
    problems: tuple[str, ...] = ()
    checkpoints: int = 0
    store_down: tuple[int, ...] = ()  # records written unkeyed while the secret store was down
    unprotected: tuple[int, ...] = ()  # of those, the ones after the newest valid checkpoint


@dataclass
class _Walk:
    keys: Callable[[str], bytes | None]
    heads: dict[int, str | None] = field(default_factory=dict)  # checkpointed id -> the hash seen there
    problems: list[tuple[int, str]] = field(default_factory=list)
    run: list[int] = field(default_factory=list)  # consecutive records whose MAC does not match

    def close_run(self) -> None:
        if not self.run:
            return
        first, last = self.run[0], self.run[-1]
        text = f"record {first}: its contents do not match its MAC (edited)"
        if last > first:
            text += f"; records {first + 1}..{last}: re-hashed after it (hashes recomputed without the key)"
        self.problems.append((first, text))
        self.run = []


def verify_chain(records: Iterable[Mapping[str, Any]], keys: Callable[[str], bytes | None] | None = None,
                 checkpoints: Iterable[Mapping[str, Any]] = ()) -> ChainReport:
    """Walk every record in id order and report every break: edits (by record id), gaps, downgrades to
    unkeyed records, and records missing or altered against the newest valid checkpoint."""
    walk = _Walk(keys or (lambda kid: None))
    valid_checkpoints = []
    for cp in checkpoints:
        key = walk.keys(cp["key_id"])
        if key is None or not hmac.compare_digest(checkpoint_mac(cp, key), cp["mac"]):
            walk.problems.append((cp["head_id"], f"checkpoint {cp.get('id', '?')} (record {cp['head_id']}): "
                                                 "its signature does not match (forged or edited)"))
            continue
        valid_checkpoints.append(cp)
        walk.heads.setdefault(cp["head_id"], None)
    prev_hash, prev_id, count, keyed_seen = GENESIS, 0, 0, False
    store_down: list[int] = []
    for rec in records:
        rid = rec["id"]
        if rid != prev_id + 1:
            walk.close_run()
            walk.problems.append((rid, f"records {prev_id + 1}..{rid - 1} are missing (deleted) before record {rid}"))
        elif rec["prev_hash"] != prev_hash:
            walk.close_run()
            walk.problems.append((rid, f"record {rid}: prev_hash does not match record {prev_id} "
                                       "(a record before it was deleted or replaced)"))
        kid = rec.get("key_id")
        if kid == STORE_DOWN_KEY_ID:
            keyed_seen = True
            store_down.append(rid)
            if record_digest(rec, rec["prev_hash"]) != rec["hash"]:
                walk.run.append(rid)
            else:
                walk.close_run()
        elif kid:
            keyed_seen = True
            key = walk.keys(kid)
            if key is None:
                walk.close_run()
                walk.problems.append((rid, f"record {rid}: signed with an unknown key {kid!r}"))
            elif not hmac.compare_digest(record_mac(rec, rec["prev_hash"], key), rec["hash"]):
                walk.run.append(rid)
            else:
                walk.close_run()
        else:
            if keyed_seen:
                walk.close_run()
                walk.problems.append((rid, f"record {rid}: unkeyed after keyed records (its MAC was removed)"))
            elif record_hash(rec, rec["prev_hash"]) != rec["hash"]:
                walk.run.append(rid)
            elif rec.get("outcome") not in (None, derive_outcome(rec["allowed"], rec["upstream_status"])):
                walk.close_run()
                walk.problems.append((rid, f"record {rid}: its outcome does not match its decision (edited)"))
            else:
                walk.close_run()
        if rid in walk.heads:
            walk.heads[rid] = rec["hash"]
        prev_hash, prev_id = rec["hash"], rid
        count += 1
    walk.close_run()
    if valid_checkpoints:
        newest = max(valid_checkpoints, key=lambda cp: cp["head_id"])
        if newest["head_id"] > prev_id:
            walk.problems.append((prev_id + 1, f"records {prev_id + 1}..{newest['head_id']} are missing (deleted "
                                               f"tail): checkpoint {newest.get('id', '?')} of "
                                               f"{_timestamp(newest['at'])} signed record {newest['head_id']}"))
        for cp in valid_checkpoints:
            seen = walk.heads.get(cp["head_id"])
            if seen is not None and seen != cp["head_hash"]:
                walk.problems.append((cp["head_id"], f"record {cp['head_id']}: its hash differs from the one "
                                                     f"checkpoint {cp.get('id', '?')} signed (replaced)"))
    covered = max((cp["head_id"] for cp in valid_checkpoints), default=0)
    down, unprotected = tuple(store_down), tuple(r for r in store_down if r > covered)
    if not walk.problems:
        return ChainReport(True, count, checkpoints=len(valid_checkpoints), store_down=down, unprotected=unprotected)
    walk.problems.sort(key=lambda p: p[0])
    first_id, first = walk.problems[0]
    return ChainReport(False, count, first_id, first, tuple(p for _, p in walk.problems), len(valid_checkpoints),
                       store_down=down, unprotected=unprotected)
