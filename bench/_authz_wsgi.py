"""gunicorn entry point for bench/authz_hot_path.py: the real app, with a constant (cache-hit) upstream
token source standing in for govern.broker's upstream half, so only the authorization path is measured."""
from __future__ import annotations

import datetime as dt


class CacheHitUpstream:
    def get_token(self, named_credential, principal, scopes=(), *, force_refresh=False):
        from govern.domain.access import UpstreamToken
        from govern.domain.secret import Secret

        return UpstreamToken(access_token=Secret("bench-upstream-token"), token_type="Bearer",
                             expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1),
                             scopes=tuple(scopes))

    def invalidate(self, *a, **kw):
        pass


def app():
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import load_settings

    services = build_services(load_settings())
    services.upstream_tokens = CacheHitUpstream()
    return create_app(services=services)
