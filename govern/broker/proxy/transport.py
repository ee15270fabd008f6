"""The upstream HTTP/1.1 transport behind one seam (the hvac adapter idea), on urllib3.

Issue #14 kept a hand-written client on the credential path only if it saved at least 30% of govern's CPU
per proxied call. Measured side by side behind this `send()` seam it saved nothing (bench/README.md), so
the proxy uses urllib3's connection pools and http.client's parser, and this module adds only the bounds
a general client does not hold by itself:

- refuse to write a request line or header that could split the request (CR, LF, NUL, a name that is not
  an RFC 9110 token, text outside ISO-8859-1), matched to the true end of the string, before anything is
  sent;
- one deadline for the whole attempt: waiting for a pooled connection, connecting, writing, and reading the
  answer to its end. urllib3's read timeout is per socket operation, which an upstream that dribbles a byte
  now and then renews forever; here every read of the answer (its head too) gets only the time left;
- at most `max_connections` connections per origin (a blocking pool: a call that finds them all busy waits
  within its deadline, then TransportTimeout);
- a Content-Encoding the upstream applied although asked for identity is undone, but never beyond
  `max_decoded_bytes` (a gzip or deflate bomb answers TransportBodyTooLarge);
- TLS verifies the certificate chain and the host name (the default SSL context);
- a connection goes back to the pool only after its answer was read to the end; a pooled connection found
  closed is replaced before writing, and a request is never sent twice (no retries here: the proxy's own
  policy decides, RFC 9112 section 9.3.1);
- interim answers (1xx) are skipped (http.client skips only 100, and would hand over a 103 as the answer
  and leave the real one on the connection for the next request); 101 was never asked for: unreachable.
"""
from __future__ import annotations

import functools
import http.client
import io
import re
import ssl
import threading
import time
from typing import cast
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import EmptyPoolError, HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from govern import __version__


class TransportTimeout(Exception):
    pass


class TransportUnreachable(Exception):
    pass


class TransportBodyTooLarge(Exception):
    """The answer, once its Content-Encoding is undone, is larger than the transport accepts."""


class InvalidRequest(ValueError):
    """A request line or header that cannot be written safely (it would split the request)."""


# Used with fullmatch: `$` would also match before a trailing "\n", letting "X-Name\n" through.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2
# RFC 9110 section 5.5: no control character but HTAB in a field value (CR, LF and NUL would split it).
_FIELD_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# origin-form (RFC 9112 section 3.2.1): visible ASCII, no fragment ("#"), every "%" an escape. urllib3
# percent-encodes what RFC 3986 leaves out ("[", "|", '"', ...) and upper-cases escapes; a stray "%" would
# make it encode every "%" of the target, so it is refused instead.
_TARGET = re.compile(r"/(?:[\x21\x22\x24\x26-\x7e]|%[0-9A-Fa-f]{2})*")
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding",
                          "user-agent", "te", "upgrade", "keep-alive", "expect"})
USER_AGENT = f"govern/{__version__}"
READ_BYTES = 64 * 1024
MAX_DECODED_BYTES = 32 * 1024 * 1024  # an answer the upstream compressed, once decompressed
MAX_CONNECTIONS = 64  # per origin, idle and in use


def request_fields(method: str, target: str, headers: Mapping[str, str]) -> dict[str, str]:
    """The header fields to write for a request, or InvalidRequest for anything that would split it.

    Framing and connection management (Host, Content-Length, Transfer-Encoding, Connection, ...) are the
    transport's own: a caller's value for them is dropped, and `Accept-Encoding: identity` is asked for."""
    if not _TOKEN.fullmatch(method):
        raise InvalidRequest("the method is not an HTTP token")
    if not _TARGET.fullmatch(target):
        raise InvalidRequest("the request target is not origin-form (a space, control, fragment or stray %)")
    fields = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise InvalidRequest("a header name is not an HTTP token")
        value = str(value)
        if _FIELD_VALUE_BAD.search(value):
            raise InvalidRequest(f"the value of header {name} has a line break, NUL or another control character")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequest("a header value has characters outside ISO-8859-1") from None
        if name.lower() not in _OWN_HEADERS:
            fields[name] = value
    return fields


# --- the attempt's deadline, inside urllib3 and http.client --------------------------------------------

_ATTEMPT = threading.local()  # .deadline: the attempt this thread is making (set around urlopen)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportTimeout()
    return left


class _TimeLeft(urllib3.Timeout):
    """urllib3's timeout whose connect and read values are the time left before one deadline, read each
    time urllib3 asks (it clones a Timeout per request: this one is its own clone)."""

    def __init__(self, deadline: float):
        super().__init__(connect=None, read=None, total=None)
        self.deadline = deadline

    def clone(self) -> _TimeLeft:
        return self

    def start_connect(self) -> float:
        return time.monotonic()

    @property
    def connect_timeout(self) -> float:
        return _left(self.deadline)

    @property
    def read_timeout(self) -> float:
        return _left(self.deadline)


class _DeadlineReader(io.RawIOBase):
    """The answer's bytes from the socket; each read may wait only for the time left before the deadline,
    so that an upstream sending a byte now and then cannot renew a per-read timeout."""

    def __init__(self, sock, deadline: float):
        super().__init__()
        self._sock = sock
        self._file = sock.makefile("rb", buffering=0)  # keeps the socket open while the answer is read
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the attempt's deadline passed")
        self._sock.settimeout(left)
        return self._file.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class _Answer(http.client.HTTPResponse):
    """http.client's parser of one answer, reading through a _DeadlineReader, and skipping every interim
    (1xx) answer before the final one, not only 100 Continue."""

    def __init__(self, sock, debuglevel: int = 0, method: str | None = None, url: str | None = None, *,
                 deadline: float):
        super().__init__(sock, debuglevel, method, url)
        self.fp.close()  # http.client's own buffered file over the socket, replaced by the bounded one
        self.fp = io.BufferedReader(_DeadlineReader(sock, deadline), READ_BYTES)

    def _read_status(self):
        version, status, reason = super()._read_status()
        if 100 <= status < 200 and status != 101:
            # begin() skips the header fields of an interim answer and reads the next status line only for
            # 100 (RFC 9110 section 15.2: any 1xx but 101 is followed by the final answer).
            return version, http.client.CONTINUE, reason
        return version, status, reason


class _DeadlineConnection(HTTPConnection):
    @property
    def response_class(self):  # read by http.client's getresponse(), in the thread making the attempt
        return functools.partial(_Answer, deadline=_ATTEMPT.deadline)


class _DeadlineTlsConnection(HTTPSConnection):
    @property
    def response_class(self):
        return functools.partial(_Answer, deadline=_ATTEMPT.deadline)


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class _TlsPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineTlsConnection


@functools.lru_cache(maxsize=1)
def _default_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # verifies the certificate chain and the host name


# --- the answer ----------------------------------------------------------------------------------------

class Headers(Mapping[str, str]):
    """An answer's header fields: case-insensitive, a repeated field joined with ", " (RFC 9110 section
    5.3), and `items()` once per name in the upstream's first spelling (urllib3's yields every field)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: urllib3.HTTPHeaderDict):
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name]

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class UpstreamResponse:
    """The few things the proxy reads from an answer; `close()` returns the connection to the pool if the
    answer was read to its end, and closes it otherwise."""

    def __init__(self, raw: urllib3.HTTPResponse, max_decoded_bytes: int):
        self._raw = raw
        self.status_code = raw.status
        self.headers = Headers(raw.headers)
        self._max = max_decoded_bytes
        self._content: bytes | None = None
        self._read_to_end = False

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_content())
        return self._content

    def iter_content(self, chunk: int = READ_BYTES) -> Iterator[bytes]:
        if self._content is not None:
            yield self._content
            return
        total = 0
        try:
            # urllib3 undoes gzip and deflate with each step's output bounded by `chunk` (a bomb is never
            # expanded whole), so the count below stops it one chunk past the limit at most.
            for part in self._raw.stream(chunk, decode_content=True):
                total += len(part)
                if total > self._max:
                    raise TransportBodyTooLarge()
                yield part
        except TransportBodyTooLarge:
            self._drop()
            raise
        except Urllib3Timeout:
            self._drop()
            raise TransportTimeout() from None
        except (HTTPError, http.client.HTTPException, OSError, ValueError):
            self._drop()  # broken off, malformed framing, or a body that does not decode
            raise TransportUnreachable() from None
        self._read_to_end = True

    def _drop(self) -> None:
        self._raw.close()  # closes the connection: it is never pooled half-read
        self._raw.release_conn()

    def close(self) -> None:
        if not self._read_to_end:
            self._raw.close()
        self._raw.release_conn()


# --- the transport -------------------------------------------------------------------------------------

class Urllib3Transport:
    """One urllib3 connection pool per upstream origin. Origins are the named credentials' base URLs, so
    they are few; each pool holds at most `max_connections` connections (idle and in use)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, *, max_connections: int = MAX_CONNECTIONS,
                 max_decoded_bytes: int = MAX_DECODED_BYTES):
        self.max_connections = max_connections
        self.max_decoded_bytes = max_decoded_bytes
        self._ssl = ssl_context
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool(self, origin: str) -> urllib3.HTTPConnectionPool:
        pool = self._pools.get(origin)
        if pool is not None:
            return pool
        parts = urlsplit(origin)
        try:
            port = parts.port  # a port out of range is a ValueError
        except ValueError:
            raise TransportUnreachable() from None
        if not parts.hostname:
            raise TransportUnreachable()
        with self._lock:
            pool = self._pools.get(origin)
            if pool is None:
                pool = (_TlsPool(parts.hostname, port, ssl_context=self._ssl or _default_context(),
                                 maxsize=self.max_connections, block=True, retries=False)
                        if parts.scheme == "https"
                        else _Pool(parts.hostname, port, maxsize=self.max_connections, block=True, retries=False))
                self._pools[origin] = pool
        return pool

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             timeout: float) -> UpstreamResponse:
        """One attempt: `timeout` seconds for all of it, from waiting for a connection to the answer's end."""
        deadline = time.monotonic() + timeout
        origin, target = _split(url)
        fields = request_fields(method, target, headers)
        pool = self._pool(origin)
        _ATTEMPT.deadline = deadline
        try:
            raw = pool.urlopen(method, target, body=body or None, headers=fields, retries=False, redirect=False,
                               assert_same_host=False, preload_content=False, decode_content=True,
                               release_conn=False,
                               pool_timeout=_left(deadline),  # type: ignore[arg-type]  # a float works; the stub says int
                               timeout=_TimeLeft(deadline))
        except EmptyPoolError:
            raise TransportTimeout() from None  # every connection to this origin stayed busy
        except NewConnectionError:  # before the timeout: urllib3 makes it a kind of connect timeout
            raise TransportUnreachable() from None
        except Urllib3Timeout:
            raise TransportTimeout() from None
        except (HTTPError, http.client.HTTPException, OSError, ValueError):
            raise TransportUnreachable() from None
        finally:
            _ATTEMPT.deadline = None
        if raw.status == 101:  # a protocol switch govern never asked for: the connection is not HTTP any more
            raw.close()
            raw.release_conn()
            raise TransportUnreachable()
        return UpstreamResponse(cast(urllib3.HTTPResponse, raw), self.max_decoded_bytes)  # preload_content=False

    def open_connections(self, origin: str) -> int:
        """Connections to `origin` in use, and idle ones whose socket is open."""
        pool = self._pools.get(origin.rstrip("/"))
        queue = pool.pool if pool is not None else None
        if queue is None:
            return 0
        with queue.mutex:
            idle = list(queue.queue)
        return self.max_connections - len(idle) + sum(1 for conn in idle if conn is not None and not conn.is_closed)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


_ORIGIN = re.compile(r"(https?://[^/?#]+)(.*)", re.S)


def _split(url: str) -> tuple[str, str]:
    match = _ORIGIN.fullmatch(url)
    if match is None:  # the proxy only builds http(s) URLs under a named credential's base URL
        raise TransportUnreachable()
    origin, rest = match.groups()
    return origin, rest if rest.startswith("/") else "/" + rest
