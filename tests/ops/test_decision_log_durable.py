"""Issue #16 "An answer is not sent before its record is durable", end to end with real processes: the
landscape from `govern apply`, the secrets from `govern secrets put` (the CLI as a subprocess), govern under
gunicorn (2 workers x 16 threads) on PostgreSQL, a fake upstream. 200 proxied calls are answered, then every
gunicorn process is SIGKILLed: all 200 decision records are there, each under its call's correlation id, and
`govern log verify` finds the chain intact. The same on SQLite, whose writer keeps its own driver connection
(issue #20)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import pytest
import requests
import sqlalchemy as sa

from tests.fakes.resource_server import ResourceServer
from tests.procs import ROOT, Gunicorn
pytestmark = [pytest.mark.slow]
USER_SECRET = "durable-log-user-client-secret"
API_KEY = "durable-log-upstream-api-key"
CALLS = 200

LANDSCAPE = """\
apiVersion: govern/v1
kind: Landscape
systems:
  - {{id: stock, name: Stock, kind: inventory, scopes: [items.read]}}
credentials:
  - {{id: stock-key, system: stock, protocol: api_key_header, header: X-Api-Key, principals: [{{name: default}}]}}
named_credentials:
  - {{id: stock-api, credential: stock-key, url: "{url}", methods: [GET], paths: ["/v1/**"]}}
integration_users:
  - id: stock-sync
    name: Stock sync
    owner: stock-team@example.com
    justification: Reads stock for the durable decision log test.
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


def _govern(env, *args, input: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "govern", *args], cwd=ROOT, env=env, input=input, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def durable_database_url(request, tmp_path):
    """PostgreSQL, and a migrated SQLite file (WAL, synchronous=NORMAL: a commit survives the process's death)."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    target = tmp_path / "govern.db"
    shutil.copyfile(request.getfixturevalue("_sqlite_template"), target)
    return f"sqlite:///{target}"


def test_acknowledged_calls_survive_a_sigkill_of_every_gunicorn_process(tmp_path, durable_database_url):
    database_url = durable_database_url
    upstream = ResourceServer().start()
    home = tmp_path / "instance"
    home.mkdir()
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": database_url,
           "GOVERN_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    gunicorn = None
    try:
        (tmp_path / "governance.yaml").write_text(LANDSCAPE.format(url=upstream.url))
        _govern(env, "apply", "-f", str(tmp_path / "governance.yaml"))
        _govern(env, "secrets", "put", "--user", "stock-sync", "--field", "client_secret", input=USER_SECRET)
        _govern(env, "secrets", "put", "stock-key", "--field", "api_key", input=API_KEY)

        gunicorn = Gunicorn.start(env, tmp_path / "gunicorn.log",
                                  ["--workers", "2", "--worker-class", "gthread", "--threads", "16"])
        base = gunicorn.base
        resp = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials", "scope": "items.read"},
                             auth=("stock-sync", USER_SECRET), timeout=30)
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]

        acknowledged: list[str] = []
        lock = threading.Lock()

        def calls(worker: int) -> None:
            with requests.Session() as http:
                for i in range(CALLS // 20):
                    cid = f"durable-{worker}-{i}"
                    r = http.get(f"{base}/api/v1/named-credentials/stock-api/proxy/v1/items/{worker}-{i}",
                                 headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": cid}, timeout=60)
                    if r.status_code == 200:
                        with lock:
                            acknowledged.append(cid)

        threads = [threading.Thread(target=calls, args=(w,)) for w in range(20)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(acknowledged) == CALLS
        gunicorn.kill()  # every process of it: no shutdown hook, no atexit, what is not committed is lost
        gunicorn = None

        engine = sa.create_engine(database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT correlation_id, outcome, upstream_status FROM decision "
                                            "WHERE action = 'proxy'")).all()
        finally:
            engine.dispose()
        assert len(rows) == CALLS
        assert sorted(r.correlation_id for r in rows) == sorted(acknowledged)
        assert {(r.outcome, r.upstream_status) for r in rows} == {("allow", 200)}
        verified = _govern(env, "log", "verify")
        assert f"chain intact: {CALLS + 1} records" in verified.stdout  # and the /oauth/token issuance
        assert API_KEY not in verified.stdout + (tmp_path / "gunicorn.log").read_text(errors="replace")
    finally:
        if gunicorn is not None:
            gunicorn.kill()
        upstream.stop()
