"""The upstream HTTP transport behind one seam (the hvac adapter idea).

urllib3 directly, not requests: the proxy forwards already-prepared headers and bytes, so requests'
per-call preparation (cookies, environment merging, hooks) is pure overhead on the hot path.
A pooled, keep-alive connection manager; redirects and retries are never done here (the proxy
decides); the response is streamed.
"""
from __future__ import annotations

import re
import threading
from typing import Iterator

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, TimeoutError as Urllib3Timeout


class TransportTimeout(Exception):
    pass


class TransportUnreachable(Exception):
    pass


class UpstreamResponse:
    """The few things the proxy reads from an answer; `close()` returns the connection to the pool."""

    def __init__(self, raw: urllib3.HTTPResponse):
        self._raw = raw
        self.status_code = raw.status
        self.headers = raw.headers  # case-insensitive
        self._content: bytes | None = None
        self._consumed = False

    @property
    def content(self) -> bytes:
        if self._content is None:
            try:
                self._content = self._raw.read()
                self._consumed = True
            except Urllib3Timeout:
                raise TransportTimeout() from None
            except HTTPError:
                raise TransportUnreachable() from None
        return self._content

    def iter_content(self, chunk: int = 64 * 1024) -> Iterator[bytes]:
        if self._content is not None:
            yield self._content
            return
        yield from self._raw.stream(chunk)
        self._consumed = True

    def close(self) -> None:
        # A fully read body leaves the connection reusable; a half-read one must not go back to the pool.
        if not self._consumed:
            self._raw.close()
        self._raw.release_conn()

_ORIGIN = re.compile(r"^(https?://[^/?#]+)(.*)$", re.S)


class Urllib3Transport:
    """One keep-alive connection pool per upstream origin, kept here (not in a PoolManager): the hot path
    skips the manager's URL parsing and pool-key normalisation, and a pool is never evicted and closed
    under a call that is using it. Origins are the named credentials' base URLs, so they are few."""

    def __init__(self, pool_size: int = 64):
        self.pool_size = pool_size
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool(self, origin: str) -> urllib3.HTTPConnectionPool:
        pool = self._pools.get(origin)
        if pool is None:
            with self._lock:
                pool = self._pools.get(origin)
                if pool is None:
                    pool = urllib3.connection_from_url(origin, maxsize=self.pool_size, block=False, retries=False)
                    self._pools[origin] = pool
        return pool

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float):
        match = _ORIGIN.match(url)
        if match is None:  # the proxy only builds http(s) URLs under a named credential's base URL
            raise TransportUnreachable()
        origin, rest = match.groups()
        target = rest if rest.startswith("/") else "/" + rest
        try:
            raw = self._pool(origin).urlopen(method, target, body=body or None, headers=headers, redirect=False,
                                             retries=False, assert_same_host=False, preload_content=False,
                                             timeout=urllib3.Timeout(connect=timeout, read=timeout))
        except NewConnectionError:  # before timeouts: urllib3 makes it a subclass of ConnectTimeoutError
            raise TransportUnreachable() from None
        except Urllib3Timeout:
            raise TransportTimeout() from None
        except MaxRetryError as exc:
            if isinstance(exc.reason, Urllib3Timeout) and not isinstance(exc.reason, NewConnectionError):
                raise TransportTimeout() from None
            raise TransportUnreachable() from None
        except (HTTPError, OSError):
            raise TransportUnreachable() from None
        return UpstreamResponse(raw)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
