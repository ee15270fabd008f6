"""Issue #21, `max_requests_per_minute` across processes (docs/access-conditions.md): two gunicorn workers
count together, in Redis when GOVERN_REDIS_URL is set, else in the database's shared state (PostgreSQL here).

The landscape comes from `govern apply`, the secrets from `govern secrets put`; govern runs as real gunicorn
workers (`-c python:govern.gunicorn_conf`) with its clock injected at a fixed instant, so every call falls in
the same minute (tests/e2e/fixed_clock_wsgi.py); the only fake is the system behind the named credential.
Calls are fired, on fresh connections, until gunicorn's access log shows each worker answered more calls than
the limit: with a count per process, each worker alone would then have allowed the limit, twice in all.
Exactly the limit is allowed; every other call is refused naming `condition:max_requests_per_minute`.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.procs import ROOT, serving, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LIMIT = 5
NOW = "2026-11-30T10:00:17+00:00"  # a Monday; every call of the test is decided in this minute
USER_SECRET = "rate-across-processes-user-secret"
API_KEY = "rate-across-processes-api-key"
LANDSCAPE = """\
apiVersion: govern/v1
kind: Landscape
systems:
  - {{id: stock, name: Stock, kind: inventory, scopes: [items.read]}}
credentials:
  - {{id: stock-key, system: stock, protocol: api_key_header, header: X-Api-Key, principals: [{{name: default}}]}}
named_credentials:
  - {{id: stock-api, credential: stock-key, url: "{url}", methods: [GET], paths: ["/v1/**"], retry: {{attempts: 1}}}}
integration_users:
  - id: stock-sync
    owner: stock-team@example.com
    justification: Reads stock for the rate-condition test.
    review_date: 2099-01-01
    ip_ranges: [127.0.0.0/8]
    scopes: [items.read]
    permission_sets: [stock-reader]
permission_sets:
  - id: stock-reader
    scopes: [items.read]
    api_types: [REST]
    grants:
      - {{named_credential: stock-api, principal: default, methods: [GET], paths: ["/v1/items/**"]}}
    conditions:
      max_requests_per_minute: {limit}
"""


def _cli(env: dict, *args: str, input: str | None = None) -> None:
    from click.testing import CliRunner

    from govern.cli import _register, cli

    _register()
    result = CliRunner().invoke(cli, list(args), input=input, env={k: v for k, v in env.items() if k.startswith("GOVERN_")},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(params=["redis", "postgres"])
def govern_two_workers(request, tmp_path, postgres_url, resources):
    home = tmp_path / "instance"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
    env.update(GOVERN_HOME=str(home), GOVERN_DATABASE_URL=postgres_url, GOVERN_LOG_LEVEL="WARNING",
               GOVERN_TEST_NOW=NOW, PYTHONPATH=str(ROOT))
    if request.param == "redis":
        env.update(GOVERN_REDIS_URL=request.getfixturevalue("redis_url"),
                   GOVERN_REDIS_PREFIX=request.getfixturevalue("redis_prefix"))
    (tmp_path / "governance.yaml").write_text(LANDSCAPE.format(url=resources.url, limit=LIMIT))
    _cli(env, "apply", "-f", str(tmp_path / "governance.yaml"))
    _cli(env, "secrets", "put", "--user", "stock-sync", "--field", "client_secret", input=USER_SECRET)
    _cli(env, "secrets", "put", "stock-key", "--field", "api_key", input=API_KEY)
    access = tmp_path / "access.log"
    with serving(env, tmp_path / "gunicorn.log", ["-c", "python:govern.gunicorn_conf", "--workers", "2",
                                                  "--threads", "8", "--access-logfile", str(access),
                                                  "--access-logformat", "%(p)s %(s)s %(U)s"],
                 app="tests.e2e.fixed_clock_wsgi:app()") as gunicorn:
        yield gunicorn.base, access, request.param


def _proxied_by_worker(access: Path) -> Counter:
    lines = access.read_text().splitlines() if access.exists() else []
    return Counter(line.split()[0] for line in lines if "/proxy/" in line)


def test_two_workers_allow_exactly_the_limit_in_a_minute(govern_two_workers, resources):
    base, access, backend = govern_two_workers
    token = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials", "scope": "items.read"},
                          auth=("stock-sync", USER_SECRET), timeout=30)
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}", "Connection": "close"}

    def call(i: int) -> requests.Response:
        return requests.get(f"{base}/api/v1/named-credentials/stock-api/proxy/v1/items/{i}", headers=headers,
                            timeout=30)

    responses: list[requests.Response] = []
    with ThreadPoolExecutor(8) as pool:
        while True:
            responses += pool.map(call, range(len(responses), len(responses) + 16))
            sent = len(responses)
            by_worker = wait_for(lambda: (c := _proxied_by_worker(access)) and sum(c.values()) == sent and c,
                                 30, "the access log of every call")
            if len(by_worker) == 2 and min(by_worker.values()) > LIMIT:
                break
            assert sent < 800, f"the calls did not spread over both workers: {by_worker}"

    allowed = [r for r in responses if r.status_code == 200]
    denied = [r for r in responses if r.status_code != 200]
    assert len(allowed) == LIMIT, (backend, by_worker, Counter(r.status_code for r in responses))
    assert resources.count == LIMIT  # nothing past the limit reached the upstream
    for r in denied:
        assert r.status_code == 403 and r.headers["Content-Type"].startswith("application/problem+json"), r.text
        problem = r.json()
        assert problem["code"] == "condition_not_met", problem
        assert problem["rule"] == "condition:max_requests_per_minute", problem
