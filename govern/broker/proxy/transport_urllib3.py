"""The same transport seam on urllib3, kept to measure the hand-written one against (issue #14).

`GOVERN_PROXY_TRANSPORT=urllib3` selects it; the default is govern.broker.proxy.transport.HttpTransport.
It holds the same request-side rules (the same validation: a header that could split the request is
refused before anything is sent) and the same bounds where urllib3 offers them: at most `max_connections`
per origin (a blocking pool waits for a free one within the attempt), one total timeout for the attempt,
and decoded answers capped at `max_decoded_bytes`. bench/proxy.py --transport urllib3 compares the two
in one run.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import urllib3
from urllib3.exceptions import EmptyPoolError, HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from govern.broker.proxy.transport import (MAX_CONNECTIONS, MAX_DECODED_BYTES, RECV_BYTES, TransportBodyTooLarge,
                                           TransportTimeout, TransportUnreachable, _serialise, _split)


class Urllib3Response:
    """The few things the proxy reads from an answer; `close()` returns the connection to the pool."""

    def __init__(self, raw: urllib3.HTTPResponse, max_decoded: int, deadline: float):
        self._raw = raw
        self.status_code = raw.status
        self.headers = raw.headers  # case-insensitive, repeated fields joined
        self._max = max_decoded
        self._deadline = deadline
        self._content: bytes | None = None
        self._consumed = False

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_content())
        return self._content

    def iter_content(self, chunk: int = RECV_BYTES) -> Iterator[bytes]:
        if self._content is not None:
            yield self._content
            return
        total = 0
        try:
            for part in self._raw.stream(chunk, decode_content=True):
                total += len(part)
                if total > self._max:
                    raise TransportBodyTooLarge()
                if time.monotonic() > self._deadline:
                    raise TransportTimeout()
                yield part
        except Urllib3Timeout:
            raise TransportTimeout() from None
        except HTTPError:
            raise TransportUnreachable() from None
        self._consumed = True

    def close(self) -> None:
        # A fully read body leaves the connection reusable; a half-read one must not go back to the pool.
        if not self._consumed:
            self._raw.close()
        self._raw.release_conn()


class Urllib3Transport:
    def __init__(self, pool_size: int = 64, *, max_connections: int = MAX_CONNECTIONS,
                 max_decoded_bytes: int = MAX_DECODED_BYTES):
        self.max_connections = min(pool_size, max_connections)
        self.max_decoded_bytes = max_decoded_bytes
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool(self, origin: str) -> urllib3.HTTPConnectionPool:
        pool = self._pools.get(origin)
        if pool is None:
            with self._lock:
                pool = self._pools.get(origin)
                if pool is None:
                    pool = urllib3.connection_from_url(origin, maxsize=self.max_connections, block=True,
                                                       retries=False)
                    self._pools[origin] = pool
        return pool

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float):
        deadline = time.monotonic() + timeout
        origin, target = _split(url)
        _serialise(method, target, "x", headers, body or b"")  # the same refusals as the default transport
        try:
            raw = self._pool(origin).urlopen(
                method, target, body=body or None, headers=headers, redirect=False, retries=False,
                assert_same_host=False, preload_content=False, pool_timeout=timeout,
                timeout=urllib3.Timeout(total=timeout))
        except NewConnectionError:
            raise TransportUnreachable() from None
        except (Urllib3Timeout, EmptyPoolError):
            raise TransportTimeout() from None
        except (HTTPError, OSError):
            raise TransportUnreachable() from None
        return Urllib3Response(raw, self.max_decoded_bytes, deadline)

    def open_connections(self, origin: str) -> int:
        pool = self._pools.get(origin.rstrip("/"))
        return 0 if pool is None else pool.num_connections

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
