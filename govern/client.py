"""govern.client: what an integration imports to call a system through govern. It depends only on requests
(and, for private_key_jwt, on authlib's JOSE library joserfc, imported only when used).

    auth = GovernAuth("https://govern.example.com", client_id="erp-order-sync", client_secret=...,
                      named_credential="erp-api", scopes=["orders.read"])
    requests.get("https://erp.example.com/api/orders", auth=auth)

GovernAuth obtains a govern access token (RFC 6749 section 4.4 client_credentials at `/oauth/token`, with
client_secret_basic or private_key_jwt, RFC 7523 section 2.2), then an upstream token for the named
credential (`POST /api/v1/named-credentials/{name}/token`). It caches both and renews each `skew` seconds
before it expires. If the upstream answers 401, it drops the upstream token, gets a fresh one and retries
the request once. The integration never holds a refresh token or an upstream client secret.

GovernAuth works only for OAuth named credentials: govern never hands out a stored static credential (basic,
API key, custom header), and GovernAuth raises ProxyOnlyCredentialError for those.

GovernProxySession sends the calls through govern instead (`/api/v1/named-credentials/{name}/proxy/...`),
so the integration never holds an upstream token either.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from collections.abc import Callable, Iterable

import requests
from requests.auth import AuthBase
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class GovernClientError(Exception):
    """govern refused or failed a request. `code` is the problem code (or the OAuth error), `status` the HTTP status."""

    def __init__(self, status: int, code: str, detail: str = "", rule: str | None = None):
        self.status, self.code, self.detail, self.rule = status, code, detail, rule
        super().__init__(f"govern answered {status} {code}" + (f": {detail}" if detail else ""))


class ProxyOnlyCredentialError(GovernClientError):
    """The named credential holds a static secret (basic, API key, custom header), which govern never hands
    out: call the system through govern's proxy with GovernProxySession instead of GovernAuth."""

    def __init__(self, named_credential: str, detail: str = ""):
        super().__init__(400, "proxy_only_credential",
                         f"{named_credential!r} holds a static secret that never leaves govern; use "
                         f"GovernProxySession(..., named_credential={named_credential!r}) instead of GovernAuth")
        self.named_credential = named_credential


class _Cached:
    def __init__(self):
        self.value: str | None = None
        self.token_type = "Bearer"  # noqa: S105 - a token type
        self.expires_at = 0.0

    def fresh(self, now: float, skew: float) -> bool:
        return self.value is not None and self.expires_at - skew > now


class GovernTokens:
    """The two cached tokens and how to get them; shared by GovernAuth and GovernProxySession."""

    def __init__(self, govern_url: str, client_id: str, *, client_secret: str | None = None,
                 private_key: str | None = None, scopes: Iterable[str] = (), skew: float = 30.0,
                 timeout: float = 10.0, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time):
        if not (client_secret or private_key) or (client_secret and private_key):
            raise ValueError("give exactly one of client_secret or private_key")
        self.govern_url = govern_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._private_key = private_key
        self.scopes = tuple(scopes)
        self.skew = skew
        self.timeout = timeout
        self.http = session or requests.Session()
        self.clock = clock
        self._lock = threading.Lock()
        self._govern = _Cached()
        self._upstream: dict[str, _Cached] = {}

    def __repr__(self) -> str:  # never show the secret or the tokens
        return f"GovernTokens({self.govern_url!r}, client_id={self.client_id!r})"

    @property
    def token_url(self) -> str:
        return f"{self.govern_url}/oauth/token"

    def govern_token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or not self._govern.fresh(self.clock(), self.skew):
                self._govern = self._fetch_govern_token()
            return self._govern.value  # type: ignore[return-value]

    def upstream_token(self, named_credential: str, *, renew: bool = False) -> tuple[str, str]:
        with self._lock:
            cached = self._upstream.get(named_credential)
            if renew or cached is None or not cached.fresh(self.clock(), self.skew):
                # On renew, tell govern which token the upstream refused, so it fetches a new one.
                rejected = cached.value if renew and cached is not None else None
                cached = self._upstream[named_credential] = self._fetch_upstream_token(named_credential,
                                                                                         rejected=rejected)
            return cached.token_type, cached.value  # type: ignore[return-value]

    # --- calls to govern ---------------------------------------------------------------------------------

    def _fetch_govern_token(self) -> _Cached:
        data: dict[str, str] = {"grant_type": "client_credentials"}
        if self.scopes:
            data["scope"] = " ".join(self.scopes)
        auth = None
        if self._client_secret:
            auth = (self.client_id, self._client_secret)
        else:
            data.update(client_id=self.client_id, client_assertion_type=CLIENT_ASSERTION_TYPE,
                        client_assertion=self._client_assertion())
        resp = self.http.post(self.token_url, data=data, auth=auth, timeout=self.timeout)
        return self._cached(resp)

    def _client_assertion(self) -> str:
        try:
            key, alg = RSAKey.import_key(self._private_key), "RS256"
        except Exception:  # noqa: BLE001 - not RSA: try EC
            key, alg = ECKey.import_key(self._private_key), "ES256"
        now = int(self.clock())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url, "iat": now,
                  "exp": now + 60, "jti": uuid.uuid4().hex}
        return jwt.encode({"alg": alg}, claims, key)

    def _fetch_upstream_token(self, named_credential: str, *, retried: bool = False,
                              rejected: str | None = None) -> _Cached:
        url = f"{self.govern_url}/api/v1/named-credentials/{named_credential}/token"
        body: dict[str, Any] = {"scope": " ".join(self.scopes)} if self.scopes else {}
        if rejected:
            body["rejected_token"] = rejected
        resp = self.http.post(url, json=body, timeout=self.timeout,
                              headers={"Authorization": f"Bearer {self._govern_value()}"})
        if resp.status_code == 401 and not retried:
            # govern no longer accepts our token (signing key rotated, revoked): get a new one, once.
            self._govern = self._fetch_govern_token()
            return self._fetch_upstream_token(named_credential, retried=True, rejected=rejected)
        if resp.status_code == 400 and _problem_code(resp) == "proxy_only_credential":
            raise ProxyOnlyCredentialError(named_credential)
        return self._cached(resp)

    def _govern_value(self) -> str:
        if not self._govern.fresh(self.clock(), self.skew):
            self._govern = self._fetch_govern_token()
        return self._govern.value  # type: ignore[return-value]

    def _cached(self, resp: requests.Response) -> _Cached:
        if resp.status_code != 200:
            raise _error(resp)
        doc = resp.json()
        item = _Cached()
        item.value = doc["access_token"]
        item.token_type = doc.get("token_type") or "Bearer"
        expires_in = doc.get("expires_in")
        item.expires_at = self.clock() + (float(expires_in) if expires_in is not None else 300.0)
        return item


def _problem_code(resp: requests.Response) -> str | None:
    try:
        doc = resp.json()
    except ValueError:
        return None
    return doc.get("code") if isinstance(doc, dict) else None


def _error(resp: requests.Response) -> GovernClientError:
    try:
        doc = resp.json()
    except ValueError:
        doc = {}
    code = doc.get("code") or doc.get("error") or "http_error"
    detail = doc.get("detail") or doc.get("error_description") or ""
    return GovernClientError(resp.status_code, str(code), str(detail), doc.get("rule"))


class GovernAuth(AuthBase):
    """requests auth: `Authorization: <type> <upstream token>` for the named credential, renewed before expiry,
    and one retry with a fresh upstream token when the upstream answers 401."""

    def __init__(self, govern_url: str, client_id: str, client_secret: str | None = None, *,
                 private_key: str | None = None, named_credential: str, scopes: Iterable[str] = (),
                 skew: float = 30.0, timeout: float = 10.0, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time):
        self.tokens = GovernTokens(govern_url, client_id, client_secret=client_secret, private_key=private_key,
                                   scopes=scopes, skew=skew, timeout=timeout, session=session, clock=clock)
        self.named_credential = named_credential

    def __repr__(self) -> str:
        return f"GovernAuth({self.tokens.govern_url!r}, named_credential={self.named_credential!r})"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token_type, value = self.tokens.upstream_token(self.named_credential)
        r.headers["Authorization"] = f"{token_type} {value}"
        r.register_hook("response", self._retry_on_401)
        return r

    def _retry_on_401(self, resp: requests.Response, **kwargs) -> requests.Response:
        if resp.status_code != 401 or getattr(resp.request, "_govern_retried", False):
            return resp
        token_type, value = self.tokens.upstream_token(self.named_credential, renew=True)
        retry = resp.request.copy()
        retry.headers["Authorization"] = f"{token_type} {value}"
        retry._govern_retried = True  # type: ignore[attr-defined]
        resp.content  # noqa: B018 - release the connection before reusing it
        resp.close()
        new = resp.connection.send(retry, **kwargs)
        new.history.append(resp)
        new.request = retry
        return new


class GovernProxySession:
    """Calls through govern's proxy: `session.get("/orders")` -> `/api/v1/named-credentials/{name}/proxy/orders`,
    with the govern token (renewed before expiry, and once on a 401 from govern)."""

    def __init__(self, govern_url: str, client_id: str, client_secret: str | None = None, *,
                 private_key: str | None = None, named_credential: str, scopes: Iterable[str] = (),
                 skew: float = 30.0, timeout: float = 30.0, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time):
        self.tokens = GovernTokens(govern_url, client_id, client_secret=client_secret, private_key=private_key,
                                   scopes=scopes, skew=skew, timeout=timeout, session=session, clock=clock)
        self.named_credential = named_credential
        self.timeout = timeout

    def url(self, path: str) -> str:
        return f"{self.tokens.govern_url}/api/v1/named-credentials/{self.named_credential}/proxy/{path.lstrip('/')}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in range(2):
            headers["Authorization"] = f"Bearer {self.tokens.govern_token(renew=attempt == 1)}"
            resp = self.tokens.http.request(method, self.url(path), headers=headers, **kwargs)
            if resp.status_code != 401 or attempt == 1:
                return resp
        return resp  # pragma: no cover - the loop returns

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw) -> requests.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)
