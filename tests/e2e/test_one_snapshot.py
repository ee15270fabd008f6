"""Issue #15, one snapshot: a change made by `govern apply` or `govern secrets put`, in another process, takes
effect in every gunicorn worker within the stated bound (govern.broker.landscape.BOUND, 2 s: every request is
answered from a snapshot that matched the stored version at most that long before the request started; the
rebuild itself runs in the background, see tests/broker/test_landscape_version.py).

govern runs as two real gunicorn workers; every write is a real `govern` CLI process; the only fake is the
system behind the named credential. The workers' snapshots are warmed with concurrent calls first (so both
workers hold the old landscape), then each change is made, the test waits just past the bound, and every
following call, concurrent again so that both workers answer, must show the change:
- a new API key (`govern secrets put`): the upstream receives only the new key;
- a named credential narrowed to other paths (`govern apply`): the proxy refuses the old path;
- the integration user suspended (`govern apply`): the decider refuses its still-valid govern token.
Not a timed assertion: behaviour is asserted after the bound, never how fast it appeared.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from govern.broker.landscape import BOUND
from tests.procs import ROOT, Gunicorn

GOVERN = str(Path(sys.executable).with_name("govern"))
pytestmark = [pytest.mark.slow]

USER_SECRET = "snapshot-order-sync-client-secret"
LANDSCAPE = """\
apiVersion: govern/v1
kind: Landscape
systems:
  - {{id: stock, name: Stock, kind: inventory, scopes: [items.read]}}
credentials:
  - id: stock-key
    system: stock
    protocol: api_key_header
    header: X-Api-Key
    principals: [{{name: default}}]
named_credentials:
  - {{id: stock-api, credential: stock-key, url: "{resource_url}", methods: [GET], paths: ["{paths}"],
      retry: {{attempts: 1}}}}
integration_users:
  - id: order-sync
    status: {status}
    owner: stock-team@example.com
    justification: Reads stock for the one-snapshot test.
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
"""


class Instance:
    """One govern instance: its home and database, the CLI as separate processes, gunicorn with 2 workers."""

    def __init__(self, tmp_path: Path, database_url: str, resources):
        self.tmp_path = tmp_path
        self.home = tmp_path / "instance"
        self.home.mkdir()
        self.resources = resources
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
        self.env.update(GOVERN_HOME=str(self.home), GOVERN_DATABASE_URL=database_url, GOVERN_LOG_LEVEL="WARNING",
                        PYTHONPATH=str(ROOT))
        self.gunicorn: Gunicorn | None = None
        self.base = ""

    def govern(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([GOVERN, *args], input=stdin, env=self.env, cwd=str(ROOT), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        return done.stdout

    def apply(self, *, paths: str = "/v1/**", status: str = "active") -> None:
        path = self.tmp_path / "governance.yaml"
        path.write_text(LANDSCAPE.format(resource_url=self.resources.url, paths=paths, status=status))
        self.govern("apply", "-f", str(path))

    def start(self) -> None:
        self.gunicorn = Gunicorn.start(self.env, self.tmp_path / "gunicorn.log",
                                       ["--workers", "2", "--worker-class", "gthread", "--threads", "4"])
        self.base = self.gunicorn.base

    def stop(self) -> None:
        if self.gunicorn is not None:
            self.gunicorn.stop()

    def govern_token(self) -> str:
        r = requests.post(self.base + "/oauth/token", data={"grant_type": "client_credentials", "scope": "items.read"},
                          auth=("order-sync", USER_SECRET), timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def calls(self, token: str, n: int = 24) -> list[requests.Response]:
        """`n` proxied calls, 8 at a time on fresh connections: both workers answer some of them."""
        def one(i: int) -> requests.Response:
            return requests.get(f"{self.base}/api/v1/named-credentials/stock-api/proxy/v1/items/{i}",
                                headers={"Authorization": f"Bearer {token}", "Connection": "close"}, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(n)))


def _past_the_bound() -> None:
    # Not polling for the effect: the bound itself is what is under test, so the test waits it out once.
    time.sleep(BOUND + 0.25)


@pytest.fixture
def sqlite_database(tmp_path, _sqlite_template) -> str:
    target = tmp_path / "govern.db"
    shutil.copyfile(_sqlite_template, target)
    return f"sqlite:///{target}"


def _changes_reach_every_worker(tmp_path: Path, database_url: str, resources) -> None:
    govern = Instance(tmp_path, database_url, resources)
    govern.apply()
    govern.govern("secrets", "put", "--user", "order-sync", "--field", "client_secret", stdin=USER_SECRET)
    govern.govern("secrets", "put", "stock-key", "--field", "api_key", stdin="stock-key-one")
    govern.start()
    try:
        token = govern.govern_token()
        warm = govern.calls(token)
        assert [r.status_code for r in warm] == [200] * len(warm), warm[0].text
        assert {r.headers.get("X-Api-Key") for r in resources.received} == {"stock-key-one"}

        # 1. A new secret version, put by the CLI: the next calls inject only the new key.
        govern.govern("secrets", "put", "stock-key", "--field", "api_key", stdin="stock-key-two")
        _past_the_bound()
        seen = len(resources.received)
        after = govern.calls(token)
        assert [r.status_code for r in after] == [200] * len(after), after[0].text
        assert {r.headers.get("X-Api-Key") for r in resources.received[seen:]} == {"stock-key-two"}

        # 2. The named credential narrowed to other paths: the proxy's Target refuses the old one.
        govern.apply(paths="/v2/**")
        _past_the_bound()
        seen = len(resources.received)
        refused = govern.calls(token)
        assert {(r.status_code, r.json()["code"]) for r in refused} == {(403, "named_credential_forbids")}, \
            refused[0].text
        assert len(resources.received) == seen

        # 3. The paths back, and the integration user suspended: its govern token is still valid, the decider
        # (on the same snapshot) refuses it.
        govern.apply(status="suspended")
        _past_the_bound()
        denied = govern.calls(token)
        assert {(r.status_code, r.json()["code"]) for r in denied} == {(403, "access_denied")}, denied[0].text
        assert all("user_suspended" in r.text for r in denied), denied[0].text
        assert len(resources.received) == seen
    finally:
        govern.stop()


def test_changes_reach_every_gunicorn_worker_within_the_bound_on_sqlite(tmp_path, sqlite_database, resources):
    _changes_reach_every_worker(tmp_path, sqlite_database, resources)


@pytest.mark.postgres
def test_changes_reach_every_gunicorn_worker_within_the_bound_on_postgres(tmp_path, postgres_url, resources):
    _changes_reach_every_worker(tmp_path, postgres_url, resources)
