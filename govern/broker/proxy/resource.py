"""What a proxied call touches, for least-privilege checks (seed practice 7).

Salesforce REST paths name an object (`/services/data/vNN.N/sobjects/{Object}[/{id}]`); the fields
are the JSON body's keys for writes and the `fields=` query parameter for reads. The object is read from
the whole upstream path, the named credential's base path included: a base URL that already ends in
`/services/data/vNN.N` must not hide the object from the grant's object permissions. Pure.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

# Searched, not anchored: a base URL may sit under a path prefix (a gateway's /api) as well as end in the version.
_SOBJECT = re.compile(r"/services/data/v\d+\.\d+/sobjects/([A-Za-z][A-Za-z0-9_]*)(?:/[^/]+)?(?:/.*)?$")
WRITE_METHODS = {"POST", "PATCH", "PUT"}
IDEMPOTENT_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}


@dataclass(frozen=True)
class Resource:
    object: str | None
    fields: tuple[str, ...]


def upstream_path(base_url: str | None, path: str) -> str:
    """The path the upstream sees: the base URL's path, then the caller's path (as join_under builds it)."""
    base = urlsplit(base_url).path.rstrip("/") if base_url else ""
    return base + path


def salesforce_resource(method: str, path: str, query: str, body: bytes, content_type: str | None,
                        base_url: str | None = None) -> Resource:
    match = _SOBJECT.search(unquote(upstream_path(base_url, path)))
    if not match:
        return Resource(None, ())
    fields: tuple[str, ...] = ()
    if method in WRITE_METHODS and body and (content_type or "").split(";")[0].strip().endswith("json"):
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            fields = tuple(sorted(str(k) for k in doc if k != "attributes"))
    elif method == "GET":
        raw = parse_qs(query).get("fields", [])
        fields = tuple(sorted({f.strip() for item in raw for f in item.split(",") if f.strip()}))
    return Resource(match.group(1), fields)
