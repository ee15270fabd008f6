"""Keep every proxied call under its named credential's base URL (SSRF defence; OWASP SSRF Prevention).

The caller supplies only the part after `/proxy/`. We look at it as received on the wire (still
percent-encoded), refuse anything that could change what the upstream or an intermediary
understands as the path or the host, and then check the joined URL once more. Rules (each one a test):

- encoded slash or backslash (`%2f`, `%5c`), double encoding (`%25`), encoded or raw control characters;
- `.` and `..` segments (also `..;param`), after one decoding and after Unicode NFKC folding (fullwidth dots);
- malformed or overlong UTF-8 (`%c0%ae`);
- backslashes, empty segments (`a//b`), a leading `//` (scheme-relative URL), a scheme (`http:`), `@`;
- finally: the joined URL keeps the base's scheme, host and port, and its path stays under the base path.
Pure: no framework imports.
"""
from __future__ import annotations

from govern.domain.paths import path_matches  # noqa: F401 - the one glob implementation, re-exported

import re
import unicodedata
from urllib.parse import quote, unquote, urlsplit, urljoin

from govern.broker.proxy.errors import PathNotAllowed

_ENCODED_FORBIDDEN = re.compile(r"%(2f|5c|25|0[0-9a-f]|1[0-9a-f]|7f)", re.I)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*:", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_PERCENT = re.compile(r"%(?![0-9a-fA-F]{2})")
# RFC 3986 pchar minus "%" (we re-encode from the decoded form) and minus "@" (refused anyway).
_SAFE = "/-._~!$&'()*+,;=:"


def _refuse(why: str) -> PathNotAllowed:
    return PathNotAllowed(f"the path is refused: {why}")


def normalise_path(raw: str) -> str:
    """The upstream path (leading "/", percent-encoded) for the raw remainder after `/proxy/`, or PathNotAllowed."""
    if _CONTROL.search(raw) or "\\" in raw or " " in raw:
        raise _refuse("control characters, spaces or backslashes")
    if _BAD_PERCENT.search(raw):
        raise _refuse("malformed percent-encoding")
    if _ENCODED_FORBIDDEN.search(raw):
        raise _refuse("encoded slash, backslash, percent or control character")
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:  # overlong or broken UTF-8, e.g. "%c0%ae" for "."
        raise _refuse("malformed UTF-8 in the path") from None
    folded = unicodedata.normalize("NFKC", decoded)
    for form in (decoded, folded):
        if _CONTROL.search(form) or "\\" in form:
            raise _refuse("control characters or backslashes")
        if form.startswith("/"):
            raise _refuse("scheme-relative or absolute path")
        if _SCHEME.match(form):
            raise _refuse("an absolute URL")
        if "@" in form:
            raise _refuse("userinfo")
        segments = form.split("/")
        # A segment's path parameters (";x") are ignored by some servers (Tomcat: "..;/" is "../").
        if any(seg.split(";", 1)[0] in (".", "..") for seg in segments):
            raise _refuse("dot segments")
        if any(seg == "" for seg in segments[:-1]):
            raise _refuse("empty path segments")
    return "/" + quote(decoded, safe=_SAFE)


def join_under(base_url: str, path: str, query: str = "") -> str:
    """base_url + path, checked to stay on the same origin and under the base path."""
    base = urlsplit(base_url)
    base_path = base.path.rstrip("/")
    target = f"{base.scheme}://{base.netloc}{base_path}{path}" + (f"?{query}" if query else "")
    parsed = urlsplit(target)
    if (parsed.scheme, parsed.netloc) != (base.scheme, base.netloc):
        raise _refuse("the target leaves the base URL's host")
    if not (parsed.path == base_path or parsed.path.startswith(base_path + "/")):
        raise _refuse("the target leaves the base URL's path")
    return target


def check_query(query: str) -> str:
    if _CONTROL.search(query) or " " in query or "#" in query:
        raise _refuse("control characters in the query")
    if _BAD_PERCENT.search(query):  # the transport would have to re-encode every "%" of it (transport.py)
        raise _refuse("malformed percent-encoding in the query")
    return query


def same_origin_under(base_url: str, location: str) -> bool:
    """Is a redirect Location (absolute or relative) on the base's origin and under its path?"""
    base = urlsplit(base_url)
    target = urlsplit(urljoin(base_url.rstrip("/") + "/", location))
    base_path = base.path.rstrip("/")
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        return False
    if any(seg in (".", "..") for seg in unquote(target.path).split("/")):
        return False
    return target.path == base_path or target.path.startswith(base_path + "/")
