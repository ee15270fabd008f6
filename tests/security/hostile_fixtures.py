"""A landscape built as a user builds it, for the attack-vector tests of tests/security (issue #14):
`govern apply` of a governance.yaml, `govern secrets put --user` for the integration user's client secret,
then a govern access token from `POST /oauth/token` (client_secret_basic)."""
from __future__ import annotations

import base64

import pytest

USER_SECRET = "hostile-input-client-secret-3b1f"
CALLER_IP = "10.20.0.7"
LANDSCAPE = """\
apiVersion: govern/v1
systems:
  - id: erp
    scopes: [orders.read, orders.write]
credentials:
  - id: erp-cc
    system: erp
    protocol: api_key_header
    header: X-Api-Key
    principals: [{{name: default}}]
named_credentials:
  - id: erp-api
    credential: erp-cc
    url: {url}
    methods: [GET, POST, PUT, PATCH, DELETE]
integration_users:
  - id: order-sync
    ip_ranges: [{ranges}]
    scopes: [orders.read]
    permission_sets: [orders]
permission_sets:
  - id: orders
    scopes: [orders.read]
    grants:
      - named_credential: erp-api
        principal: default
"""


def basic(user: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def apply_landscape(runner, tmp_path, *, url: str = "http://127.0.0.1:9/api", ranges: str = "10.20.0.0/16",
                    timeout: str | None = None):
    """`govern apply -f` the landscape, then the user's client secret and the API key through `govern secrets put`.
    `timeout` is the named credential's (a duration such as "1s"; its default otherwise)."""
    path = tmp_path / "governance.yaml"
    quoted = ", ".join(f"'{r.strip()}'" for r in ranges.split(","))  # '::/0' is not a plain YAML scalar
    landscape = LANDSCAPE.format(url=url, ranges=quoted)
    if timeout is not None:
        landscape = landscape.replace("    methods: [GET,", f"    timeout: {timeout}\n    methods: [GET,", 1)
    path.write_text(landscape)
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 0, result.output
    put = runner.invoke(["secrets", "put", "--user", "order-sync", "--field", "client_secret"], input=USER_SECRET)
    assert put.exit_code == 0, put.output
    put = runner.invoke(["secrets", "put", "erp-cc", "--principal", "default", "--field", "api_key"],
                        input="hostile-input-api-key")
    assert put.exit_code == 0, put.output
    return result


def issue_token(client, remote: str = CALLER_IP):
    return client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                       headers=basic("order-sync", USER_SECRET), environ_base={"REMOTE_ADDR": remote})


@pytest.fixture
def caller_token(runner, tmp_path, client):
    apply_landscape(runner, tmp_path)
    response = issue_token(client)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]
