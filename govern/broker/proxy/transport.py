"""The upstream HTTP transport behind one seam (the hvac adapter idea): requests with a pooled session,
redirects never followed by the library (the proxy decides), the response streamed."""
from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter


class TransportTimeout(Exception):
    pass


class TransportUnreachable(Exception):
    pass


class RequestsTransport:
    def __init__(self, pool_size: int = 64):
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or netrc credentials from the environment
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float):
        try:
            return self.session.request(method, url, headers=headers, data=body or None, timeout=timeout,
                                        allow_redirects=False, stream=True)
        except requests.Timeout:
            raise TransportTimeout() from None
        except requests.ConnectionError:
            raise TransportUnreachable() from None
        except requests.RequestException:
            raise TransportUnreachable() from None

    def close(self) -> None:
        self.session.close()
