"""The decision log's hash chain: each record's `hash` is SHA-256 over a canonical JSON of its fields
and the previous record's hash, so an edited, inserted or deleted record breaks the chain.

Canonical JSON: sorted keys, no whitespace, UTF-8, timestamps as ISO 8601 UTC with microseconds.
Records carry consecutive ids (assigned by the writer under the chain lock), so a deleted record also
shows as a gap. A deleted *tail* cannot be detected from the chain alone; anchor the last hash
elsewhere (an export, a ticket) when that matters.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

GENESIS = "0" * 64

HASHED_FIELDS = ("id", "at", "correlation_id", "integration_user", "action", "named_credential", "principal",
                 "method", "path", "resource_object", "api_type", "scopes_requested", "scopes_granted",
                 "source_ip", "allowed", "rules", "upstream_status", "latency_ms")


_LIST_FIELDS = ("scopes_requested", "scopes_granted", "rules")


def _timestamp(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SORTED_FIELDS = tuple(sorted(HASHED_FIELDS))


def canonical_json(record: Mapping[str, Any]) -> bytes:
    # Built in sorted key order, so json.dumps need not sort (the same bytes as sort_keys=True).
    fields = {k: record.get(k) for k in _SORTED_FIELDS}
    if isinstance(fields["at"], dt.datetime):
        fields["at"] = _timestamp(fields["at"])
    for key in _LIST_FIELDS:
        if isinstance(fields[key], tuple):
            fields[key] = list(fields[key])
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: Mapping[str, Any], prev_hash: str) -> str:
    h = hashlib.sha256()
    h.update(canonical_json(record))
    h.update(prev_hash.encode("ascii"))
    return h.hexdigest()


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    records: int
    broken_at: int | None = None
    problem: str = ""


def verify_chain(records: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Walk records in id order; stop at the first one that breaks the chain."""
    prev_hash, prev_id, count = GENESIS, None, 0
    for rec in records:
        rid = rec["id"]
        if prev_id is not None and rid != prev_id + 1:
            return ChainReport(False, count, rid, f"record {rid}: records {prev_id + 1}..{rid - 1} are missing "
                                                   f"(deleted) after record {prev_id}")
        if rec["prev_hash"] != prev_hash:
            where = f"record {prev_id}" if prev_id is not None else "the genesis"
            return ChainReport(False, count, rid, f"record {rid}: prev_hash does not match {where} "
                                                   "(a record before it was deleted or replaced)")
        if record_hash(rec, prev_hash) != rec["hash"]:
            return ChainReport(False, count, rid, f"record {rid}: its contents do not match its hash (edited)")
        prev_hash, prev_id = rec["hash"], rid
        count += 1
    return ChainReport(True, count)
