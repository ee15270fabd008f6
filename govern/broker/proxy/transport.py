"""The upstream HTTP transport behind one seam (the hvac adapter idea).

urllib3 directly, not requests: the proxy forwards already-prepared headers and bytes, so requests'
per-call preparation (cookies, environment merging, hooks) is pure overhead on the hot path.
A pooled, keep-alive connection manager; redirects and retries are never done here (the proxy
decides); the response is streamed.
"""
from __future__ import annotations

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

class Urllib3Transport:
    def __init__(self, pool_size: int = 64):
        self.pool = urllib3.PoolManager(num_pools=32, maxsize=pool_size, block=False, retries=False)

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float):
        try:
            raw = self.pool.request(method, url, body=body or None, headers=headers, redirect=False, retries=False,
                                    preload_content=False, timeout=urllib3.Timeout(connect=timeout, read=timeout))
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
        self.pool.clear()
