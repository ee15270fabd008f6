"""`govern sandbox`: a local OAuth 2.0 authorization server and a small API, to try govern on one machine.

A development tool, never a production part: `govern sandbox` and `govern serve --with-sandbox` refuse to
start with GOVERN_ENV=production. The sandbox plays "the real system" of the example landscape's `sandbox`
system (examples/governance.yaml): its secrets (a client secret, a refresh token, an API key) are generated
at every start, registered in the sandbox and stored into govern's secret store the way `govern secrets put`
stores them, so govern can use them at once and nobody has to copy a value.

- govern/sandbox/server.py: the authorization server (RFC 6749 client credentials, section 4.4, and refresh
  token with rotation, section 6) and the resource API (bearer token, RFC 6750, or API key header);
- govern/sandbox/provision.py: the generated secrets and where govern keeps them.
"""
from __future__ import annotations

DEFAULT_PORT = 8900
CLIENT_ID = "govern-sandbox"
API_KEY_HEADER = "X-API-Key"
SCOPES = ("orders.read", "items.read")
REFRESH_TOKEN_USER = "sandbox-user"

from govern.sandbox.provision import SandboxSecrets, provision, refuse_in_production  # noqa: E402
from govern.sandbox.server import SandboxServer  # noqa: E402

__all__ = ["DEFAULT_PORT", "CLIENT_ID", "API_KEY_HEADER", "SCOPES", "REFRESH_TOKEN_USER", "SandboxSecrets",
           "SandboxServer", "provision", "refuse_in_production"]
