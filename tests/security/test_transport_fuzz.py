"""Hypothesis drives the proxy transport (urllib3 with govern's bounds) over a real socket (issue #14).

- Requests: whatever method, target, header names and values and body it is given, `send()` either refuses
  (InvalidRequest), and then some part really cannot be written and nothing reached the upstream, or the
  upstream receives exactly one request carrying exactly what was given, read by a strict parser written
  here from RFC 9112 (not by the code under test): no smuggled header, no second request.
- Answers: well-formed answers (Content-Length, chunked, until close, interim 1xx) and adversarial ones
  (bytes inserted, removed or replaced, duplicate or negative lengths, both framings, bare LF, folded
  headers, NUL, huge chunk sizes, truncation, garbage under Content-Encoding, a protocol switch), sent in
  slices of random size. The transport hands over a response or fails with TransportUnreachable,
  TransportTimeout or TransportBodyTooLarge, never another exception, and never hangs (one deadline per
  attempt). A well-formed answer is handed over exactly: its status, its fields and its body.
"""
from __future__ import annotations

import re
import socket
import string
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govern.broker.proxy.transport import (USER_AGENT, InvalidRequest, TransportBodyTooLarge, TransportTimeout,
                                           TransportUnreachable, Urllib3Transport)

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
OWN = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "user-agent", "te",
       "upgrade", "keep-alive", "expect"}
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=list(HealthCheck))


class Upstream:
    """Records each request it is sent (everything the client wrote before waiting for the answer, so a
    smuggled second request would be there too), answers it with `self.answer` in slices of `self.slice`
    bytes, then closes its side."""

    def __init__(self):
        self.answer = b""
        self.slice = 65536
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head = data.split(b"\r\n\r\n", 1)[0]
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                               if line.lower().startswith(b"content-length:")), 0)
                while len(data) < len(head) + 4 + length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                answer, size = self.answer, self.slice if len(self.answer) < 20_000 else 65536
                for at in range(0, len(answer), size):
                    conn.sendall(answer[at:at + size])
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):  # until the client is done with the connection
                    pass
            except OSError:
                pass

    def stop(self):
        self._listener.close()


@pytest.fixture(scope="module")
def upstream():
    server = Upstream()
    yield server
    server.stop()


# --- requests ------------------------------------------------------------------------------------------

# RFC 3986 section 2: what may stand unencoded in a path or query; anything else urllib3 percent-encodes.
URI_CHARS = set(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?")


def writable(method: str, target: str, headers: dict[str, str]) -> bool:
    """What RFC 9110/9112 let a client write, stated independently of the transport's own regexes."""
    def token(s):
        return bool(s) and all(c in TCHAR for c in s)

    def value_ok(v):
        try:
            v.encode("latin-1")
        except UnicodeEncodeError:
            return False
        return all(c == "\t" or 0x20 <= ord(c) != 0x7f for c in v)

    def target_ok(t):
        escapes_ok = all(len(t[i + 1:i + 3]) == 2 and all(c in string.hexdigits for c in t[i + 1:i + 3])
                         for i, c in enumerate(t) if c == "%")
        return t.startswith("/") and all(0x21 <= ord(c) <= 0x7e for c in t) and "#" not in t and escapes_ok

    return token(method) and target_ok(target) and all(token(n) and value_ok(v) for n, v in headers.items())


def as_sent(target: str) -> str:
    """The target as it goes on the wire: escapes upper-cased, characters RFC 3986 leaves out encoded."""
    target = re.sub(r"%[0-9a-fA-F]{2}", lambda m: m.group(0).upper(), target)
    return "".join(c if c in URI_CHARS or c == "%" else f"%{ord(c):02X}" for c in target)


def one_request(raw: bytes) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """RFC 9112 section 2.1, strictly: a request line, CRLF-terminated field lines, an empty line, and
    exactly Content-Length bytes of body, nothing after. Asserts it; returns method, target, fields, body."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, "no end of the head"
    lines = head.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line and b"\x00" not in line for line in lines)
    method, target, version = lines[0].decode("latin-1").split(" ")
    assert version == "HTTP/1.1"
    fields = []
    for line in lines[1:]:
        name, colon, value = line.decode("latin-1").partition(":")
        assert colon and name and all(c in TCHAR for c in name), f"not a field line: {line!r}"
        fields.append((name, value.strip(" \t")))
    lengths = [v for n, v in fields if n.lower() == "content-length"]
    assert len(lengths) <= 1 and not any(n.lower() == "transfer-encoding" for n, _ in fields)
    length = int(lengths[0]) if lengths else 0
    assert len(rest) == length, "bytes after the request: a second request"
    return method, target, fields, rest


names = st.one_of(st.text(alphabet=TCHAR, min_size=1, max_size=10),
                  st.text(alphabet=TCHAR + " :\r\n\x00\t\x7f\u00e9\u2028", max_size=10))
values = st.one_of(st.text(alphabet=string.printable, max_size=20),
                   st.text(alphabet=st.characters(max_codepoint=0x2100), max_size=12))
targets = st.one_of(st.text(alphabet="".join(chr(c) for c in range(0x21, 0x7f)), max_size=30).map("/".__add__),
                    st.lists(st.sampled_from(["a", "%2f", "%7e", "%4", "%zz", "?", "=", "[", "|", "#", "@"]),
                             max_size=8).map(lambda parts: "/" + "".join(parts)),
                    st.text(max_size=20).map("/".__add__))


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]) | st.text(max_size=8),
       target=targets, headers=st.dictionaries(names, values, max_size=6), body=st.binary(max_size=200))
def test_a_request_arrives_exactly_as_given_or_is_refused_before_anything_is_sent(upstream, method, target,
                                                                                  headers, body):
    upstream.answer, upstream.slice = b"HTTP/1.1 204 No Content\r\n\r\n", 65536
    transport = Urllib3Transport(max_connections=1)
    seen, connections = len(upstream.requests), upstream.connections
    try:
        try:
            response = transport.send(method, upstream.url + target, headers, body, 5)
        except InvalidRequest:
            assert not writable(method, target, headers), "refused a request RFC 9110 allows"
            assert (len(upstream.requests), upstream.connections) == (seen, connections)  # nothing was sent
            return
        assert response.status_code == 204 and response.content == b""
        response.close()
    finally:
        transport.close()
    assert writable(method, target, headers), "wrote something RFC 9110 does not allow"
    assert len(upstream.requests) == seen + 1
    sent_method, sent_target, fields, sent_body = one_request(upstream.requests[-1])
    assert (sent_method, sent_target, sent_body) == (method, as_sent(target), body)
    expected = [("host", f"127.0.0.1:{upstream.port}"), ("user-agent", USER_AGENT), ("accept-encoding", "identity")]
    expected += [(n.lower(), v.strip(" \t")) for n, v in headers.items() if n.lower() not in OWN]
    if body or method.upper() not in ("GET", "HEAD", "DELETE", "TRACE", "OPTIONS", "CONNECT"):
        expected.append(("content-length", str(len(body))))
    assert sorted((n.lower(), v) for n, v in fields) == sorted(expected)


# --- answers -------------------------------------------------------------------------------------------

header_names = st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=10).filter(
    lambda n: n.lower() not in OWN | {"content-encoding"})
header_values = st.text(alphabet=string.ascii_letters + string.digits + " ;=,/", max_size=16).map(str.strip)
MUTATIONS = ["insert", "delete", "replace", "truncate", "duplicate_length", "both_framings", "bare_lf", "obs_fold",
             "negative_length", "huge_chunk", "nul_in_header", "space_before_colon", "gzip_garbage",
             "deflate_garbage", "long_header", "many_headers", "status_garbage", "switching_protocols"]


@st.composite
def answers(draw) -> tuple[bytes, tuple[int, list[tuple[str, str]], bytes] | None]:
    """An answer's bytes, and for an unmutated one what must be handed over: status, fields, body."""
    status = draw(st.sampled_from([200, 201, 202, 204, 301, 304, 400, 401, 404, 429, 500, 503]))
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=5, unique_by=lambda f: f[0].lower()))
    body = draw(st.binary(max_size=400)) if status not in (204, 304) else b""
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    head = [f"HTTP/1.1 {status} Reason"] + [f"{n}: {v}" for n, v in headers]
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
        payload = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
    else:
        head.append("Connection: close")
        payload = body
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    if draw(st.booleans()):
        raw = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + raw
    mutation = draw(st.sampled_from([None, None, None, *MUTATIONS]))
    if mutation is None:
        return raw, (status, headers, body)
    at = draw(st.integers(0, max(0, len(raw) - 1)))
    if mutation == "insert":
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    elif mutation == "delete":
        raw = raw[:at] + raw[at + draw(st.integers(1, 8)):]
    elif mutation == "replace":
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1:]
    elif mutation == "truncate":
        raw = raw[:at]
    elif mutation == "duplicate_length":
        raw = raw.replace(b"\r\n\r\n", f"\r\nContent-Length: {len(body) + 3}\r\n\r\n".encode(), 1)
    elif mutation == "both_framings":
        raw = raw.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 1)
    elif mutation == "bare_lf":
        raw = raw.replace(b"\r\n", b"\n", draw(st.integers(1, 3)))
    elif mutation == "obs_fold":
        raw = raw.replace(b"\r\n", b"\r\n folded\r\n", 1)
    elif mutation == "negative_length":
        raw = raw.replace(b"\r\n\r\n", b"\r\nContent-Length: -1\r\n\r\n", 1)
    elif mutation == "huge_chunk":
        raw = raw.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 1)
    elif mutation == "nul_in_header":
        raw = raw.replace(b"\r\n", b"\r\nX-Nul: a\x00b\r\n", 1)
    elif mutation == "space_before_colon":
        raw = raw.replace(b"\r\n", b"\r\nX-Space : a\r\n", 1)
    elif mutation in ("gzip_garbage", "deflate_garbage"):
        encoding = "gzip" if mutation == "gzip_garbage" else "deflate"
        raw = raw.replace(b"\r\n", f"\r\nContent-Encoding: {encoding}\r\n".encode(), 1)
    elif mutation == "long_header":
        raw = raw.replace(b"\r\n", b"\r\nX-Long: " + b"a" * 300_000 + b"\r\n", 1)
    elif mutation == "many_headers":
        raw = raw.replace(b"\r\n", b"\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(500)), 1)
    elif mutation == "status_garbage":
        raw = b"HTTP/1.1 2x0 OK\r\n" + raw.split(b"\r\n", 1)[-1]
    elif mutation == "switching_protocols":
        raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n" + raw
    return raw, None


@FUZZ
@given(answer=answers(), slice_bytes=st.sampled_from([1, 3, 7, 64, 65536]), read=st.sampled_from(["content", "iter"]))
def test_answers_are_handed_over_or_refused_with_the_transports_own_errors(upstream, answer, slice_bytes, read):
    raw, expected = answer
    upstream.answer, upstream.slice = raw, slice_bytes
    transport = Urllib3Transport(max_connections=1, max_decoded_bytes=64 * 1024)
    try:
        try:
            response = transport.send("GET", upstream.url + "/fuzz", {}, b"", 5)
        except (TransportUnreachable, TransportTimeout):
            assert expected is None, "refused a well-formed answer"
            return
        try:
            body = (response.content if read == "content"
                    else b"".join(part for part in response.iter_content(7)))
        except (TransportUnreachable, TransportTimeout, TransportBodyTooLarge):
            assert expected is None, "broke off a well-formed answer"
            return
        finally:
            response.close()
        if expected is not None:
            status, fields, sent_body = expected
            assert response.status_code == status and body == sent_body
            handed = {n.lower(): v for n, v in response.headers.items()}
            assert all(handed.get(n.lower()) == v for n, v in fields)
    finally:
        transport.close()
