"""The proxy's upstream transport (urllib3 with govern's bounds) under a hostile upstream or hostile header
values, on real sockets (issue #14, "transport"): request splitting through a trailing line feed, gzip and
deflate bombs, oversized answers to calls with an Idempotency-Key, more connections than the origin's cap,
and upstreams that dribble bytes to outlive a per-read timeout. Each group has a positive control."""
from __future__ import annotations

import functools
import gzip
import socket
import threading
import zlib

import pytest

from govern.broker.proxy.transport import (
    InvalidRequest,
    TransportBodyTooLarge,
    TransportTimeout,
    TransportUnreachable,
    Urllib3Transport,
)
from tests.proxy.test_transport import Scripted, ok, read_whole
from tests.security.hostile_fixtures import CALLER_IP, apply_landscape, issue_token

MiB = 1024 * 1024


@pytest.fixture
def transport():
    t = Urllib3Transport()
    yield t
    t.close()


@functools.lru_cache(maxsize=8)
def compressed(encoding: str, size: int) -> bytes:
    zeros = b"\0" * size
    return gzip.compress(zeros, 9) if encoding == "gzip" else zlib.compress(zeros, 9)


def encoded_answer(encoding: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Encoding: {encoding}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


# --- request splitting: validation to the true end of the string -----------------------------------------

def test_control_ordinary_headers_are_written(transport):
    up = Scripted([ok()])
    r = transport.send("POST", up.url + "/x", {"X-Trace": "t-1", "Content-Type": "application/json"}, b"{}", 5)
    assert r.status_code == 200 and r.content == b'{"ok":true}'
    r.close()
    assert b"X-Trace: t-1\r\n" in up.requests[0]
    up.stop()


BAD_NAMES = ["X-Name\n", "X-Name\r\n", "X-Name\r", "X-Name\x00", "X Name", "X-Name:", "\nX-Name", "",
             "X-Name\nX-Injected", "X-Na\u00efme", "X-Name\t"]
BAD_VALUES = ["v\n", "v\r", "v\x00", "v\r\nX-Injected: 1", "\n", "v\r\n\r\nGET /admin HTTP/1.1", "\u2028v\u0100"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_header_names_that_are_not_tokens_to_the_end_are_refused(transport, name):
    up = Scripted([ok()])
    with pytest.raises(InvalidRequest):
        transport.send("GET", up.url + "/x", {name: "v"}, b"", 5)
    assert up.requests == [] and up.connections == 0  # refused before any socket was opened
    up.stop()


@pytest.mark.parametrize("value", BAD_VALUES)
def test_header_values_with_line_breaks_or_nul_are_refused(transport, value):
    up = Scripted([ok()])
    with pytest.raises(InvalidRequest):
        transport.send("GET", up.url + "/x", {"X-Value": value}, b"", 5)
    assert up.requests == [] and up.connections == 0
    up.stop()


@pytest.mark.parametrize(("method", "path"), [("GET\n", "/x"), ("GET", "/x\n"), ("GET", "/x\r\nHost: evil"),
                                              ("G ET", "/x"), ("GET", "/x y")])
def test_request_line_with_a_trailing_line_feed_is_refused(transport, method, path):
    up = Scripted([ok()])
    with pytest.raises(InvalidRequest):
        transport.send(method, up.url + path, {}, b"", 5)
    assert up.requests == []
    up.stop()


# --- decompression bombs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_control_a_compressed_answer_is_decoded(encoding):
    t = Urllib3Transport(max_decoded_bytes=MiB)
    up = Scripted([encoded_answer(encoding, compressed(encoding, MiB))])  # exactly the limit
    r = t.send("GET", up.url + "/z", {}, b"", 5)
    assert r.content == b"\0" * MiB
    r.close()
    t.close()
    up.stop()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("read", ["content", "iter_content"])
def test_a_compression_bomb_is_refused_once_past_the_limit(encoding, read):
    t = Urllib3Transport(max_decoded_bytes=MiB)
    bomb = compressed(encoding, 64 * MiB)  # about 64 KiB on the wire
    up = Scripted([encoded_answer(encoding, bomb), ok(b"next")])
    r = t.send("GET", up.url + "/z", {}, b"", 5)
    seen = 0
    with pytest.raises(TransportBodyTooLarge):
        if read == "content":
            r.content  # noqa: B018
        for part in r.iter_content():
            seen += len(part)
    assert seen <= MiB  # never more than the limit was handed out
    r.close()
    # Whether or not the bomb's bytes were all off the wire, the next answer is whole and its own.
    assert read_whole(t.send("GET", up.url + "/next", {}, b"", 5)) == b"next"
    t.close()
    up.stop()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_bomb_cut_off_mid_body_closes_its_connection(encoding):
    t = Urllib3Transport(max_decoded_bytes=MiB)
    up = Scripted([encoded_answer(encoding, compressed(encoding, 128 * MiB))])  # about 128 KiB on the wire: more than one read
    r = t.send("GET", up.url + "/z", {}, b"", 5)
    with pytest.raises(TransportBodyTooLarge):
        r.content  # noqa: B018
    r.close()
    assert t.open_connections(up.url) == 0  # half-read: dropped, not pooled
    t.close()
    up.stop()


# --- connections per origin and the attempt's deadline ---------------------------------------------------

def head_then_wait(release: threading.Event):
    def reply(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        release.wait(30)
        try:
            conn.sendall(b"ok")
        except OSError:
            pass
    return reply


def test_control_connections_are_reused_under_the_cap():
    t = Urllib3Transport(max_connections=2)
    up = Scripted([ok(), ok(), ok()])
    for _ in range(3):
        r = t.send("GET", up.url + "/x", {}, b"", 5)
        assert r.content == b'{"ok":true}'
        r.close()
    assert up.connections == 1 and t.open_connections(up.url) == 1
    t.close()
    up.stop()


def test_the_cap_counts_busy_connections_and_a_waiting_call_gets_the_freed_one():
    t = Urllib3Transport(max_connections=2)
    release = threading.Event()
    up = Scripted([head_then_wait(release), head_then_wait(release), ok(b"third")])
    first = t.send("GET", up.url + "/a", {}, b"", 10)
    second = t.send("GET", up.url + "/b", {}, b"", 10)
    assert t.open_connections(up.url) == 2
    with pytest.raises(TransportTimeout):  # both busy: waits for one, until its own deadline
        t.send("GET", up.url + "/c", {}, b"", 0.3)
    assert up.connections == 2  # the cap held: no third socket was opened
    result: dict = {}

    def third():
        r = t.send("GET", up.url + "/c", {}, b"", 10)
        result["body"] = r.content
        r.close()

    waiter = threading.Thread(target=third)
    waiter.start()
    release.set()
    assert first.content == b"ok" and second.content == b"ok"
    first.close()
    second.close()
    waiter.join(10)
    assert result == {"body": b"third"} and up.connections <= 2
    assert t.open_connections(up.url) <= 2
    t.close()
    up.stop()


def test_a_failed_connect_frees_its_slot():
    t = Urllib3Transport(max_connections=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    for _ in range(3):
        with pytest.raises((TransportUnreachable, TransportTimeout)):
            t.send("GET", f"http://127.0.0.1:{port}/x", {}, b"", 1)
    assert t.open_connections(f"http://127.0.0.1:{port}") == 0
    t.close()


def dribble(head: bytes, stop: threading.Event, every: float = 0.05):
    """Send `head`, then one byte at a time, each well inside a per-recv timeout, until the client goes away."""
    def reply(conn):
        try:
            conn.sendall(head)
            while not stop.wait(every):
                conn.sendall(b"x")
        except OSError:
            pass
        return False
    return reply


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\nX-Slow: ", b"HTTP/1.1 200 OK\r\nX-Slow: a\r\nX-",
                                  b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n",
                                  b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 100000\r\n\r\n",
                                  b"HTTP/1.1 103 Early Hints\r\n\r\n"])  # (a 1xx then 'x...': not HTTP)
def test_an_upstream_that_dribbles_bytes_cannot_outlive_the_deadline(transport, head):
    stop = threading.Event()
    up = Scripted([dribble(head, stop)])
    try:
        with pytest.raises((TransportTimeout, TransportUnreachable)) as caught:
            r = transport.send("GET", up.url + "/slow", {}, b"", 0.5)
            r.content  # noqa: B018
        if not head.startswith(b"HTTP/1.1 103"):
            assert caught.type is TransportTimeout
    finally:
        stop.set()
        up.stop()


def test_a_byte_every_200_ms_ends_in_a_timeout_after_one_second(transport):
    """The bound as issue #14 states it: headers, then one body byte every 0.2 s, each well inside any
    per-read timeout, against a 1 s deadline for the attempt."""
    stop = threading.Event()
    up = Scripted([dribble(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", stop, every=0.2)])
    r = transport.send("GET", up.url + "/slow", {}, b"", 1)
    assert r.status_code == 200  # the head came at once
    try:
        with pytest.raises(TransportTimeout):
            r.content  # noqa: B018
        r.close()
        assert transport.open_connections(up.url) == 0  # the half-read connection was closed, not pooled
    finally:
        stop.set()
        up.stop()


def test_control_a_slow_but_timely_answer_arrives(transport):
    def reply(conn):
        for piece in (b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n\r\n", b"o", b"k"):
            conn.sendall(piece)
    up = Scripted([reply])
    r = transport.send("GET", up.url + "/x", {}, b"", 10)
    assert r.content == b"ok"
    r.close()
    up.stop()


# --- through the proxy: the user's view -----------------------------------------------------------------

@pytest.fixture
def proxied(runner, tmp_path, client):
    """A landscape applied with `govern apply` whose named credential points at a scripted upstream."""
    up = Scripted([])
    apply_landscape(runner, tmp_path, url=up.url + "/api")
    response = issue_token(client)
    assert response.status_code == 200, response.get_json()
    headers = {"Authorization": f"Bearer {response.get_json()['access_token']}"}

    def call(method: str, path: str, **kw):
        return client.open(f"/api/v1/named-credentials/erp-api/proxy/{path}", method=method,
                           headers={**headers, **kw.pop("headers", {})}, environ_base={"REMOTE_ADDR": CALLER_IP},
                           **kw)

    yield up, call
    up.stop()


def test_control_proxied_compressed_answer(proxied):
    up, call = proxied
    up.replies.append(encoded_answer("gzip", gzip.compress(b'{"ok":true}')))
    response = call("GET", "orders")
    assert response.status_code == 200 and response.data == b'{"ok":true}'


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_proxied_compression_bomb_is_502(proxied, encoding):
    up, call = proxied
    up.replies.append(encoded_answer(encoding, compressed(encoding, 48 * MiB)))  # ~48 KiB: read whole
    response = call("GET", "orders")
    assert response.status_code == 502 and response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "upstream_answer_too_large"


@pytest.fixture
def proxied_1s(runner, tmp_path, client):
    """As `proxied`, with the named credential's `timeout: 1s`."""
    up = Scripted([])
    apply_landscape(runner, tmp_path, url=up.url + "/api", timeout="1s")
    response = issue_token(client)
    assert response.status_code == 200, response.get_json()
    headers = {"Authorization": f"Bearer {response.get_json()['access_token']}", "Content-Type": "application/json"}

    def call(method: str, path: str, **kw):
        return client.open(f"/api/v1/named-credentials/erp-api/proxy/{path}", method=method, headers=headers,
                           environ_base={"REMOTE_ADDR": CALLER_IP}, **kw)

    yield up, call
    up.stop()


def test_control_a_timely_answer_within_one_second(proxied_1s):
    up, call = proxied_1s
    up.replies.append(ok())
    response = call("POST", "orders", data=b"{}")
    assert response.status_code == 200 and response.data == b'{"ok":true}'


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"HTTP/1.1 200 OK\r\nX-Slow: "])
def test_a_proxied_upstream_dribbling_a_byte_every_200_ms_is_504(proxied_1s, head):
    up, call = proxied_1s
    stop = threading.Event()
    up.replies.append(dribble(head, stop, every=0.2))
    try:
        response = call("POST", "orders", data=b"{}")  # a POST without Idempotency-Key: one attempt, no retry
    finally:
        stop.set()
    assert response.status_code == 504 and response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "upstream_timeout"
    assert len(up.requests) == 1


def sized(n: int, chunked: bool = False) -> bytes:
    body = b"a" * n
    if chunked:
        return b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{n:x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    return f"HTTP/1.1 201 Created\r\nContent-Length: {n}\r\n\r\n".encode() + body


@pytest.mark.parametrize("chunked", [False, True])
def test_control_a_small_keyed_answer_is_replayed(proxied, chunked):
    up, call = proxied
    up.replies.extend([sized(1000, chunked), sized(1000, chunked)])
    key = {"Idempotency-Key": f"small-{chunked}", "Content-Type": "application/json"}
    first, again = call("POST", "orders", data=b"{}", headers=key), call("POST", "orders", data=b"{}", headers=key)
    assert first.status_code == again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert len(up.requests) == 1


@pytest.mark.parametrize("chunked", [False, True])
def test_a_large_keyed_answer_is_passed_through_and_not_stored(proxied, chunked):
    up, call = proxied
    size = MiB + 1
    up.replies.extend([sized(size, chunked), sized(size, chunked)])
    key = {"Idempotency-Key": f"large-{chunked}", "Content-Type": "application/json"}
    first = call("POST", "orders", data=b"{}", headers=key)
    assert first.status_code == 201 and len(first.data) == size and "Idempotent-Replayed" not in first.headers
    again = call("POST", "orders", data=b"{}", headers=key)  # the key was released: the upstream is called again
    assert again.status_code == 201 and len(again.data) == size and "Idempotent-Replayed" not in again.headers
    assert len(up.requests) == 2
