"""Hypothesis drives the proxy transport's serialiser and its answer handling against llhttp (issue #14).

- Serialiser: whatever method, target, header names and values and body it is given, `_serialise` either
  refuses (InvalidRequest), and then some part really cannot be written, or writes bytes that llhttp's request
  parser reads as exactly one request carrying exactly what was given: no smuggled header, no second request.
- Answers: well-formed answers (Content-Length, chunked, until close, interim 1xx) and adversarial ones
  (bytes inserted, removed or replaced, duplicate or negative lengths, both framings, bare LF, folded headers,
  NUL, huge chunk sizes, truncation, garbage under Content-Encoding) come from a real socket, read in random
  slice sizes. The transport either fails with one of its own exceptions or hands over what llhttp, fed the
  whole answer at once, reads: the same status, headers and body. It never hangs (one deadline per attempt),
  never raises anything else, and never keeps more than one connection open to the origin.
"""
from __future__ import annotations

import socket
import string
import threading

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govern.broker.proxy import transport as transport_module
from govern.broker.proxy.transport import (HttpTransport, InvalidRequest, TransportBodyTooLarge, TransportTimeout,
                                           TransportUnreachable, _serialise)

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
LLHTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
OWN = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "user-agent", "te",
       "upgrade", "keep-alive", "expect"}
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=list(HealthCheck))


# --- the serialiser ---------------------------------------------------------------------------------------

def writable(method: str, target: str, headers: dict[str, str]) -> bool:
    """What RFC 9110/9112 let a client write, stated independently of the transport's own regexes."""
    def token(s):
        return bool(s) and all(c in TCHAR for c in s)

    def value_ok(v):
        try:
            v.encode("latin-1")
        except UnicodeEncodeError:
            return False
        return not any(c in v for c in "\r\n\x00") and all(c == "\t" or ord(c) >= 0x20 and ord(c) != 0x7f for c in v)

    return (token(method) and target.startswith("/") and all(0x21 <= ord(c) <= 0x7e for c in target)
            and all(token(n) and value_ok(v) for n, v in headers.items()))


class RequestSeen:
    def __init__(self):
        self.messages, self.headers, self.body, self.url, self.complete = 0, [], b"", b"", 0

    def on_message_begin(self):
        self.messages += 1

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        self.complete += 1


names = st.one_of(st.text(alphabet=TCHAR, min_size=1, max_size=10),
                  st.text(alphabet=TCHAR + " :\r\n\x00\t\x7f\u00e9\u2028", max_size=10))
values = st.one_of(st.text(alphabet=string.printable, max_size=20),
                   st.text(alphabet=st.characters(max_codepoint=0x2100), max_size=12))


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]) | st.text(max_size=8),
       target=st.one_of(st.text(alphabet="".join(chr(c) for c in range(0x21, 0x7f)), max_size=30).map("/".__add__),
                        st.text(max_size=20)),
       headers=st.dictionaries(names, values, max_size=6), body=st.binary(max_size=200))
def test_serialiser_writes_exactly_one_request_or_refuses(method, target, headers, body):
    try:
        raw = _serialise(method, target, "upstream.example", headers, body)
    except InvalidRequest:
        assert not writable(method, target, headers)
        return
    assert writable(method, target, headers), "wrote something RFC 9110 does not allow"
    line = f"{method} {target} HTTP/1.1\r\n".encode()
    assert raw.startswith(line)
    if method not in LLHTTP_METHODS:  # a token llhttp does not know: read the rest of the request as a GET's
        raw, method = b"GET" + raw[len(method):], "GET"
    seen = RequestSeen()
    parser = httptools.HttpRequestParser(seen)
    parser.feed_data(raw)
    assert (seen.messages, seen.complete) == (1, 1)  # one request, complete, nothing after it
    assert parser.get_method().decode() == method and seen.url.decode() == target and seen.body == body
    expected = [("Host", "upstream.example"), ("User-Agent", transport_module.USER_AGENT),
                ("Accept-Encoding", "identity")]
    expected += [(n, v.strip(" \t")) for n, v in headers.items() if n.lower() not in OWN]
    if body or method in ("POST", "PUT", "PATCH"):
        expected.append(("Content-Length", str(len(body))))
    assert seen.headers == expected


# --- answers ------------------------------------------------------------------------------------------------

class Upstream:
    """Answers every request on every connection with `self.answer`, then closes the connection."""

    def __init__(self):
        self.answer = b""
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            buffer = b""
            try:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                conn.sendall(self.answer)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):  # until the client is done with the connection
                    pass
            except OSError:
                pass

    def stop(self):
        self._listener.close()


class Message:
    def __init__(self):
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.complete = False


class AnswerSeen:
    """llhttp's reading of the whole answer at once, message by message."""

    def __init__(self):
        self.messages: list[Message] = []
        self.parser = None

    def on_message_begin(self):
        self.messages.append(Message())

    def on_header(self, name, value):
        self.messages[-1].headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self):
        self.messages[-1].status = self.parser.get_status_code()

    def on_body(self, body):
        self.messages[-1].body += body

    def on_message_complete(self):
        self.messages[-1].complete = True


def reference(raw: bytes) -> Message | None:
    """The final answer (the first message with a complete head and a status of 200 or more), as llhttp reads
    the whole answer fed at once; None if it found none before an error or the end of the bytes."""
    seen = AnswerSeen()
    parser = seen.parser = httptools.HttpResponseParser(seen)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserError:
        pass
    return next((m for m in seen.messages if m.status is not None and m.status >= 200), None)


def until_close(message: Message) -> bool:
    names = {n.lower(): v.lower() for n, v in message.headers}
    return ("content-length" not in names and "chunked" not in names.get("transfer-encoding", "")
            and message.status not in (204, 304))


header_names = st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=10).filter(
    lambda n: n.lower() not in OWN | {"content-encoding"})
header_values = st.text(alphabet=string.ascii_letters + string.digits + " ;=,/", max_size=16).map(str.strip)


@st.composite
def answers(draw) -> bytes:
    status = draw(st.sampled_from([200, 201, 202, 204, 301, 304, 400, 401, 404, 429, 500, 503]))
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=5))
    body = draw(st.binary(max_size=400))
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
    mutation = draw(st.sampled_from([None, None, "insert", "delete", "replace", "truncate", "duplicate_length",
                                     "both_framings", "bare_lf", "obs_fold", "negative_length", "huge_chunk",
                                     "nul_in_header", "space_before_colon", "gzip_garbage", "deflate_garbage",
                                     "long_header", "status_garbage"]))
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
    elif mutation == "status_garbage":
        raw = b"HTTP/1.1 2x0 OK\r\n" + raw.split(b"\r\n", 1)[-1]
    return raw


@pytest.fixture(scope="module")
def upstream():
    server = Upstream()
    yield server
    server.stop()


@FUZZ
@given(raw=answers(), recv_bytes=st.sampled_from([1, 3, 7, 64, 65536]))
def test_answers_are_read_as_llhttp_reads_them_or_refused(upstream, raw, recv_bytes):
    upstream.answer = raw
    final = reference(raw)
    transport = HttpTransport(max_connections=1, max_decoded_bytes=64 * 1024)
    saved, transport_module.RECV_BYTES = transport_module.RECV_BYTES, recv_bytes
    try:
        try:
            response = transport.send("GET", upstream.url + "/fuzz", {}, b"", 5)
        except (TransportUnreachable, TransportTimeout):
            # refused before a final head: llhttp found none either (or the head is beyond MAX_HEAD_BYTES)
            assert final is None or len(raw) > transport_module.MAX_HEAD_BYTES
            return
        assert final is not None, "handed over a head llhttp does not read"
        assert response.status_code == final.status
        assert list(response.headers.items()) == _joined(final.headers)
        encoded = "content-encoding" in response.headers
        try:
            body = response.content
        except (TransportUnreachable, TransportTimeout, TransportBodyTooLarge):
            # refused mid-body: llhttp did not finish it either (or it is compressed garbage)
            assert encoded or not (final.complete or until_close(final))
            return
        finally:
            response.close()
        if not encoded:
            assert final.complete or until_close(final), "handed over a body llhttp did not finish"
            assert body == final.body
        assert transport.open_connections(upstream.url) <= 1
    finally:
        transport_module.RECV_BYTES = saved
        transport.close()


def _joined(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Repeated fields joined with ", " under the first spelling (RFC 9110 section 5.3), as Headers.items()."""
    index: dict[str, list] = {}
    order: list[str] = []
    for name, value in fields:
        key = name.lower()
        if key not in index:
            index[key] = [name, []]
            order.append(key)
        index[key][1].append(value)
    return [(index[k][0], ", ".join(index[k][1])) for k in order]


@pytest.mark.parametrize("recv_bytes", [1, 2, 3, 5, 7, 65536])
def test_a_final_answer_starting_in_the_read_that_ended_an_interim_one_is_read_whole(upstream, monkeypatch,
                                                                                      recv_bytes):
    """Found by the fuzz above: `complete`, set by the end of a 103, outlived the start of the final answer in
    the same read, and the final body was cut after its first bytes."""
    upstream.answer = (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                       b"HTTP/1.1 200 Reason\r\nContent-Length: 3\r\n\r\n\x00\x00\x00")
    monkeypatch.setattr(transport_module, "RECV_BYTES", recv_bytes)
    transport = HttpTransport()
    response = transport.send("GET", upstream.url + "/x", {}, b"", 5)
    assert (response.status_code, response.content) == (200, b"\x00\x00\x00")
    response.close()
    transport.close()
