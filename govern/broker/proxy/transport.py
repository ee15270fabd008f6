"""The upstream HTTP/1.1 transport behind one seam (the hvac adapter idea).

Keep-alive sockets per origin, requests written as bytes (RFC 9112 section 3), answers parsed by
httptools (llhttp, the C parser of Node.js). The proxy forwards already-prepared headers and bytes and
decides redirects and retries itself, so a general client's per-call machinery is pure overhead on the
hot path: under urllib3 and http.client (header parsing by the email package) the upstream exchange
was about a third of govern's CPU per proxied call (bench/proxy.py).

What a general client would do and this one must still do:
- refuse to write a request line or header that could split the request (CR, LF, NUL, bad names);
- never reuse a connection that the upstream closed, answered HTTP/1.0 without keep-alive or
  `Connection: close` on, or that was not read to the end of its answer;
- retry on a fresh connection only when a reused one was found closed before any answer byte, and
  only for idempotent methods (RFC 9110 section 9.2.2; RFC 9112 section 9.3.1);
- verify TLS certificates and the host name (the default SSL context);
- undo a Content-Encoding the upstream applied although asked for identity, but never beyond
  `max_decoded_bytes` (a gzip or deflate bomb answers `TransportBodyTooLarge`);
- bound what one origin can hold: at most `max_connections` sockets open to it (idle or in use; a call
  that finds them all busy waits for one within its deadline), and one deadline for the whole attempt
  (connect, write, and read of the answer to its end), not a timeout per `recv` that a slow upstream
  can renew forever by dribbling bytes.
"""
from __future__ import annotations

import functools
import re
import select
import socket
import ssl
import threading
import time
import zlib
from typing import Iterator
from urllib.parse import urlsplit

import httptools

from govern import __version__
from govern.broker.proxy.resource import IDEMPOTENT_METHODS


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
_TARGET = re.compile(r"/[\x21-\x7e]*")  # origin-form, already percent-encoded, no spaces or controls
_BODY_EXPECTED = frozenset({"POST", "PUT", "PATCH"})  # Content-Length: 0 even when empty, as http.client
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding",
                          "user-agent", "te", "upgrade", "keep-alive", "expect"})
USER_AGENT = f"govern/{__version__}"
RECV_BYTES = 64 * 1024
MAX_HEAD_BYTES = 256 * 1024  # an answer's status line and headers (http.client allows 100 lines of 64 KiB)
MAX_DECODED_BYTES = 32 * 1024 * 1024  # an answer the upstream compressed, once decompressed
MAX_CONNECTIONS = 64  # per origin, idle and in use


class Headers:
    """Response header fields: case-insensitive `get`/`[]`/`in`, repeated fields joined with ", "
    (RFC 9110 section 5.3), `items()` in the upstream's spelling."""

    __slots__ = ("_fields", "_index")

    def __init__(self):
        self._fields: list[tuple[str, str]] = []
        self._index: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self._fields.append((name, value))
        key = name.lower()
        self._index[key] = f"{self._index[key]}, {value}" if key in self._index else value

    def get(self, name: str, default=None):
        return self._index.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def items(self):
        seen: dict[str, tuple[str, str]] = {}
        for name, _ in self._fields:
            seen.setdefault(name.lower(), (name, self._index[name.lower()]))
        return list(seen.values())


class _Exchange:
    """httptools callbacks for one answer on one connection."""

    def __init__(self):
        self.headers = Headers()
        self.parts: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.status = 0
        self.keep_alive = False
        self.parser = None  # set once the parser exists: keep-alive is read at the end of the head

    def on_message_begin(self):
        # A final answer may start in the same read that ended an interim one (103), whose end set `complete`.
        self.headers = Headers()
        self.parts = []
        self.headers_done = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes):
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self):
        self.headers_done = True
        # llhttp forgets the framing flags once the message completes, so ask now (RFC 9112 section 9.3).
        self.keep_alive = bool(self.parser.should_keep_alive())

    def on_body(self, body: bytes):
        self.parts.append(body)

    def on_message_complete(self):
        self.complete = True


class _Connection:
    """A socket and, while it is open, one of its origin's `max_connections` slots."""

    __slots__ = ("sock", "_on_close")

    def __init__(self, sock: socket.socket, on_close=None):
        self.sock = sock
        self._on_close = on_close

    def idle_and_open(self) -> bool:
        """An idle keep-alive socket that is readable was closed (or written to) by the upstream."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()  # once: frees the origin's slot


class UpstreamResponse:
    """The few things the proxy reads from an answer; `close()` returns the connection to the pool."""

    def __init__(self, transport: "HttpTransport", origin: str, conn: _Connection, parser, exchange: _Exchange,
                 method: str, deadline: float):
        self._transport = transport
        self._deadline = deadline
        self._origin = origin
        self._conn: _Connection | None = conn
        self._parser = parser
        self._exchange = exchange
        self.status_code = exchange.status
        self.headers = exchange.headers
        self._content: bytes | None = None
        self._no_body = method == "HEAD" or exchange.status in (204, 304)
        # Neither a length nor chunked framing: the body ends when the upstream closes (RFC 9112 section 6.3).
        self._until_close = ("content-length" not in self.headers
                             and "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower())
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        self._decoder = (zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip")
                         else zlib.decompressobj() if encoding == "deflate" else None)
        self._method = method

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_content())
        return self._content

    def iter_content(self, chunk: int = RECV_BYTES) -> Iterator[bytes]:
        if self._content is not None:
            yield self._content
            return
        decoder = self._decoder
        if decoder is None:
            yield from (part for part in self._raw_parts() if part)
            return
        budget = self._transport.max_decoded_bytes
        for part in self._raw_parts():
            # max_length bounds each step: one 64 KiB chunk of a deflate bomb would otherwise expand to ~64 MiB
            while part:
                try:
                    out = decoder.decompress(part, min(chunk, budget + 1))
                except zlib.error:
                    self._discard()
                    raise TransportUnreachable() from None
                part = decoder.unconsumed_tail
                budget -= len(out)
                if budget < 0:
                    self._discard()
                    raise TransportBodyTooLarge()
                if out:
                    yield out
        tail = decoder.flush()
        if len(tail) > budget:
            raise TransportBodyTooLarge()
        if tail:
            yield tail

    def _raw_parts(self) -> Iterator[bytes]:
        exchange = self._exchange
        if self._no_body:
            self._finish()
            return
        while True:
            if exchange.parts:
                parts, exchange.parts = exchange.parts, []
                yield from parts
            if exchange.complete:
                self._finish()
                return
            if self._conn is None:
                raise TransportUnreachable()
            data = _recv(self._conn, self._discard, self._deadline)
            if not data:
                if self._until_close:
                    exchange.complete = True
                    self._discard()  # an answer ended by closing leaves nothing to reuse
                    continue
                self._discard()
                raise TransportUnreachable()  # the upstream broke off its answer
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserError:
                self._discard()
                raise TransportUnreachable() from None

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        reusable = (self._exchange.complete and self._method != "HEAD" and not self._until_close
                    and self._exchange.keep_alive)
        if reusable:
            self._transport._release(self._origin, conn)
        else:
            conn.close()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        # A fully read answer leaves the connection reusable; a half-read one must not go back to the pool.
        if self._conn is None:
            return
        if self._exchange.complete or self._no_body:
            self._finish()  # the whole answer is off the wire, so the connection is clean
        else:
            self._discard()


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportTimeout()
    return left


def _recv(conn: _Connection, on_error, deadline: float) -> bytes:
    try:
        conn.sock.settimeout(_remaining(deadline))
        return conn.sock.recv(RECV_BYTES)
    except TransportTimeout:
        on_error()
        raise
    except TimeoutError:
        on_error()
        raise TransportTimeout() from None
    except OSError:
        on_error()
        raise TransportUnreachable() from None


class HttpTransport:
    """One keep-alive socket pool per upstream origin. Origins are the named credentials' base URLs, so
    they are few; each pool keeps at most `pool_size` idle connections and has at most `max_connections`
    open (idle and in use)."""

    def __init__(self, pool_size: int = 64, ssl_context: ssl.SSLContext | None = None, *,
                 max_connections: int = MAX_CONNECTIONS, max_decoded_bytes: int = MAX_DECODED_BYTES):
        self.pool_size = min(pool_size, max_connections)
        self.max_connections = max_connections
        self.max_decoded_bytes = max_decoded_bytes
        self._ssl = ssl_context
        self._idle: dict[str, list[_Connection]] = {}
        self._open: dict[str, int] = {}  # origin -> sockets open (idle or in use)
        self._origins: dict[str, tuple[str, str, int, str]] = {}
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._closed = False

    def open_connections(self, origin: str) -> int:
        with self._lock:
            return self._open.get(origin.rstrip("/"), 0)

    # --- the pool -------------------------------------------------------------------------------

    def _origin(self, origin: str) -> tuple[str, str, int, str]:
        known = self._origins.get(origin)
        if known is None:
            parts = urlsplit(origin)
            try:
                port = parts.port  # a port out of range is a ValueError
            except ValueError:
                raise TransportUnreachable() from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise TransportUnreachable()
            default = 443 if parts.scheme == "https" else 80
            port = port or default
            host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
            known = (parts.scheme, parts.hostname, port, host if port == default else f"{host}:{port}")
            self._origins[origin] = known
        return known

    def _acquire(self, origin: str, deadline: float, *, idle_ok: bool = True) -> _Connection | None:
        """An idle connection, or None with a slot reserved for a new one; waits until the deadline while
        every slot of the origin is taken."""
        stale: list[_Connection] = []
        try:
            with self._lock:
                while True:
                    idle = self._idle.get(origin) if idle_ok else None
                    while idle:
                        conn = idle.pop()
                        if conn.idle_and_open():
                            return conn
                        stale.append(conn)  # closed outside the lock; its slot is freed now
                        self._open[origin] -= 1
                        conn._on_close = None
                    if self._open.get(origin, 0) < self.max_connections:
                        self._open[origin] = self._open.get(origin, 0) + 1
                        return None
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._freed.wait(left):
                        raise TransportTimeout()  # every connection to this origin stayed busy
        finally:
            for conn in stale:
                conn.close()

    def _free_slot(self, origin: str) -> None:
        with self._lock:
            self._open[origin] = max(0, self._open.get(origin, 0) - 1)
            self._freed.notify()

    def _release(self, origin: str, conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self.pool_size:
                idle.append(conn)
                self._freed.notify()
                return
        conn.close()

    def _connect(self, origin: str, scheme: str, hostname: str, port: int, deadline: float) -> _Connection:
        """A new socket in the slot `_acquire` reserved; the slot is freed if connecting fails."""
        sock = None
        try:
            sock = socket.create_connection((hostname, port), timeout=_remaining(deadline))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                context = self._ssl or _default_context()
                sock.settimeout(_remaining(deadline))
                sock = context.wrap_socket(sock, server_hostname=hostname)
        except (TimeoutError, TransportTimeout):
            _close_quietly(sock)
            self._free_slot(origin)
            raise TransportTimeout() from None
        except (ssl.SSLError, OSError):
            _close_quietly(sock)
            self._free_slot(origin)
            raise TransportUnreachable() from None
        return _Connection(sock, functools.partial(self._free_slot, origin))

    # --- one exchange ---------------------------------------------------------------------------

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             timeout: float) -> UpstreamResponse:
        """One attempt: `timeout` seconds for all of it, from waiting for a connection to the answer's end."""
        deadline = time.monotonic() + timeout
        origin, target = _split(url)
        scheme, hostname, port, host_header = self._origin(origin)
        request = _serialise(method, target, host_header, headers, body or b"")
        conn = self._acquire(origin, deadline)
        while True:
            reused = conn is not None
            if conn is None:
                conn = self._connect(origin, scheme, hostname, port, deadline)
            try:
                return self._exchange(origin, conn, method, request, deadline)
            except _ClosedBeforeAnswer:
                conn.close()
                if not reused or method not in IDEMPOTENT_METHODS:
                    raise TransportUnreachable() from None
                # a keep-alive race: the upstream closed as we wrote; once more, on a fresh connection
                conn = self._acquire(origin, deadline, idle_ok=False)

    def _exchange(self, origin: str, conn: _Connection, method: str, request: bytes,
                  deadline: float) -> UpstreamResponse:
        try:
            conn.sock.settimeout(_remaining(deadline))
            conn.sock.sendall(request)
        except (TimeoutError, TransportTimeout):
            conn.close()
            raise TransportTimeout() from None
        except OSError:
            raise _ClosedBeforeAnswer() from None
        exchange = _Exchange()
        parser = httptools.HttpResponseParser(exchange)
        exchange.parser = parser
        received = 0
        while True:
            if received > MAX_HEAD_BYTES:
                conn.close()
                raise TransportUnreachable()  # endless headers: not an answer we can forward
            try:
                conn.sock.settimeout(_remaining(deadline))
                data = conn.sock.recv(RECV_BYTES)
            except (TimeoutError, TransportTimeout):
                conn.close()
                raise TransportTimeout() from None
            except OSError:
                if not received:
                    raise _ClosedBeforeAnswer() from None
                conn.close()
                raise TransportUnreachable() from None
            if not data:
                if not received:
                    raise _ClosedBeforeAnswer()
                conn.close()
                raise TransportUnreachable()
            received += len(data)
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                conn.close()
                raise TransportUnreachable() from None
            except httptools.HttpParserError:
                conn.close()
                raise TransportUnreachable() from None
            if exchange.headers_done:
                status = parser.get_status_code()
                if 100 <= status < 200:  # an interim answer (103 Early Hints): the final one follows
                    exchange.headers_done = exchange.complete = False
                    continue
                exchange.status = status
                return UpstreamResponse(self, origin, conn, parser, exchange, method, deadline)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools, self._idle = list(self._idle.values()), {}
        for idle in pools:
            for conn in idle:
                conn.close()


class _ClosedBeforeAnswer(Exception):
    pass


def _close_quietly(sock) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


@functools.lru_cache(maxsize=1)
def _default_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # verifies the certificate chain and the host name


_ORIGIN = re.compile(r"(https?://[^/?#]+)(.*)", re.S)


def _split(url: str) -> tuple[str, str]:
    match = _ORIGIN.fullmatch(url)
    if match is None:  # the proxy only builds http(s) URLs under a named credential's base URL
        raise TransportUnreachable()
    origin, rest = match.groups()
    return origin, rest if rest.startswith("/") else "/" + rest


def _serialise(method: str, target: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    """The request head and body as bytes, refusing anything that would split the request."""
    if not _TOKEN.fullmatch(method):
        raise InvalidRequest("the method is not an HTTP token")
    if not _TARGET.fullmatch(target):
        raise InvalidRequest("the request target has characters that must be percent-encoded")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}",
             "Accept-Encoding: identity"]
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise InvalidRequest("a header name is not an HTTP token")
        value = str(value)
        if _FIELD_VALUE_BAD.search(value):
            raise InvalidRequest(f"the value of header {name} has a line break, NUL or another control character")
        if name.lower() in _OWN_HEADERS:
            continue  # framing and connection management are the transport's own
        lines.append(f"{name}: {value}")
    if body or method in _BODY_EXPECTED:
        lines.append(f"Content-Length: {len(body)}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidRequest("a header value has characters outside ISO-8859-1") from None
    return head + body if body else head
