"""Idempotency-Key for non-idempotent calls (seed practice 9; draft-ietf-httpapi-idempotency-key-header).

The first response is stored (with a TTL) under (caller, named credential, key) together with a
fingerprint of method + path + query + body. A duplicate replays it; a duplicate while the first is
still in flight gets 409 after a short wait; the same key with a different request gets 422.
Only the upstream's status, allowlisted headers and body are stored, never request headers.

Only answers of at most `max_body` bytes (MAX_STORED_BYTES) are stored: the store is shared (Redis) and
keeps entries for a day. A larger answer releases the key and is passed through as it streams, so a retry
with the same key calls the upstream again (docs/proxy.md).
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from collections.abc import Callable

from govern.broker.proxy.errors import IdempotencyInFlight, IdempotencyKeyReused
from govern.ports import Cache

DEFAULT_TTL = 24 * 3600
MAX_STORED_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode()):
        digest.update(part + b"\x00")
    digest.update(body)
    return digest.hexdigest()


class IdempotencyStore:
    def __init__(self, cache: Cache, *, ttl: float = DEFAULT_TTL, wait: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic,
                 max_body: int = MAX_STORED_BYTES):
        self.cache = cache
        self.ttl = ttl
        self.max_body = max_body
        self.wait = wait
        self.sleep = sleep
        self.monotonic = monotonic

    def _key(self, caller: str, named_credential: str, key: str) -> str:
        hashed = hashlib.sha256(key.encode()).hexdigest()
        return f"proxy:idem:{caller}:{named_credential}:{hashed}"

    def begin(self, caller: str, named_credential: str, key: str, fp: str,
              in_flight_ttl: float) -> StoredResponse | None:
        """Claim the key (None: go ahead), or return the stored response to replay; 409 / 422 otherwise."""
        ckey = self._key(caller, named_credential, key)
        claim = json.dumps({"state": "in_flight", "fp": fp}).encode()
        deadline = self.monotonic() + self.wait
        while True:
            if self.cache.add(ckey, claim, ttl=in_flight_ttl):
                return None
            raw = self.cache.get(ckey)
            if raw is not None:
                entry = json.loads(raw)
                if entry["fp"] != fp:
                    raise IdempotencyKeyReused()
                if entry["state"] == "done":
                    return StoredResponse(entry["status"], entry["headers"], base64.b64decode(entry["body"]))
            # else: it just expired or was released; try to claim it again
            if self.monotonic() >= deadline:
                raise IdempotencyInFlight("a request with this Idempotency-Key is still in progress; retry shortly",
                                          headers={"Retry-After": "1"})
            self.sleep(0.05)

    def finish(self, caller: str, named_credential: str, key: str, fp: str, response: StoredResponse) -> None:
        entry = {"state": "done", "fp": fp, "status": response.status, "headers": response.headers,
                 "body": base64.b64encode(response.body).decode()}
        self.cache.set(self._key(caller, named_credential, key), json.dumps(entry).encode(), ttl=self.ttl)

    def release(self, caller: str, named_credential: str, key: str) -> None:
        """Forget an in-flight claim whose call produced no storable answer, so that a retry can run."""
        self.cache.delete(self._key(caller, named_credential, key))
