"""One real govern for issue #16's tests: 4 gunicorn workers sharing PostgreSQL and Redis, its landscape from
`govern apply`, its secrets from `govern secrets put`, its alerts posted to a webhook the test reads. Only the
upstream systems are fakes (tests/fakes/oauth_server.py): one with a 30 s refresh-token grace period, one
without, one for client credentials.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import requests
from werkzeug.serving import make_server

from tests.fakes.oauth_server import FakeUpstream
from tests.procs import Gunicorn, wait_for

ROOT = Path(__file__).resolve().parents[2]
USER_SECRET = "flight-order-sync-client-secret"
CLIENT_SECRETS = {"shop-cc": "flight-cc-client-secret", "shop-rt-grace": "flight-grace-client-secret",
                  "shop-rt-strict": "flight-strict-client-secret"}
WEBHOOK_SECRET = "flight-webhook-secret"

LANDSCAPE = """\
apiVersion: govern/v1
kind: Landscape
systems:
  - {{id: shop, name: Shop, kind: erp, scopes: [orders.read]}}
credentials:
  - id: shop-cc
    system: shop
    protocol: oauth2_client_credentials
    token_url: {cc}/oauth/token
    client_id: cc-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: default}}]
  - id: shop-rt-grace
    system: shop
    protocol: oauth2_refresh_token
    token_url: {grace}/oauth/token
    client_id: rt-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: alice, subject: alice}}]
  - id: shop-rt-strict
    system: shop
    protocol: oauth2_refresh_token
    token_url: {strict}/oauth/token
    client_id: rt-client
    client_auth: client_secret_basic
    scopes: [orders.read]
    principals: [{{name: bob, subject: bob}}]
named_credentials:
  - {{id: shop-orders, credential: shop-cc, url: "{cc}", methods: [GET], paths: ["/api/**"]}}
  - {{id: grace-orders, credential: shop-rt-grace, url: "{grace}", methods: [GET], paths: ["/api/**"]}}
  - {{id: strict-orders, credential: shop-rt-strict, url: "{strict}", methods: [GET], paths: ["/api/**"]}}
integration_users:
  - id: order-sync
    name: Order sync
    owner: shop-team@example.com
    justification: Reads orders for the refresh-coordination tests.
    review_date: 2099-01-01
    ip_ranges: [127.0.0.0/8]
    scopes: [orders.read]
    permission_sets: [shop-reader]
permission_sets:
  - id: shop-reader
    scopes: [orders.read]
    api_types: [REST]
    grants:
      - {{named_credential: shop-orders, principal: default, methods: [GET], paths: ["/api/orders"]}}
      - {{named_credential: grace-orders, principal: alice, methods: [GET], paths: ["/api/orders"]}}
      - {{named_credential: strict-orders, principal: bob, methods: [GET], paths: ["/api/orders"]}}
"""


class AlertInbox:
    """The webhook receiver: every alert govern posts, in order of arrival."""

    def __init__(self):
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/alerts"

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        with self._lock:
            self.events.append(body)
        start_response("204 No Content", [])
        return [b""]

    def named(self, event: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e.get("event") == event]

    def stop(self):
        self._server.shutdown()


@dataclass
class Flight:
    base: str
    env: dict
    services: object
    cc: FakeUpstream
    grace: FakeUpstream
    strict: FakeUpstream
    alerts: AlertInbox
    gunicorn: Gunicorn
    extra: dict = field(default_factory=dict)

    def govern(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """The `govern` command line, as an operator runs it (a process of its own)."""
        return subprocess.run([sys.executable, "-m", "govern", *args], input=input, env=self.env, cwd=str(ROOT),
                              capture_output=True, text=True, timeout=120)

    def govern_here(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """The same command line run in this process (the set-up runs several: a process each costs seconds)."""
        from click.testing import CliRunner

        from govern.cli import _register, cli

        _register()
        env = {k: v for k, v in self.env.items() if k.startswith("GOVERN_")}
        result = CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)
        return subprocess.CompletedProcess(args, result.exit_code, result.output, "")

    def govern_token(self) -> str:
        resp = requests.post(self.base + "/oauth/token", data={"grant_type": "client_credentials",
                                                               "scope": "orders.read"},
                             auth=("order-sync", USER_SECRET), timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]

    def token(self, govern_token: str, name: str, rejected: str | None = None) -> requests.Response:
        body = {"scope": "orders.read", **({"rejected_token": rejected} if rejected else {})}
        return requests.post(f"{self.base}/api/v1/named-credentials/{name}/token", json=body,
                             headers={"Authorization": f"Bearer {govern_token}"}, timeout=60)

    def proxy(self, govern_token: str, name: str, path: str = "api/orders") -> requests.Response:
        return requests.get(f"{self.base}/api/v1/named-credentials/{name}/proxy/{path}",
                            headers={"Authorization": f"Bearer {govern_token}"}, timeout=60)

    def worker_pids(self) -> set[int]:
        return self.gunicorn.worker_pids()


def concurrently(n: int, call) -> list:
    """`n` calls released together; their results in completion order."""
    barrier = threading.Barrier(n)
    results, lock = [], threading.Lock()

    def run():
        barrier.wait()
        try:
            out = call()
        except Exception as exc:  # noqa: BLE001 - reported, so the assertion shows what failed
            out = exc
        with lock:
            results.append(out)

    threads = [threading.Thread(target=run) for _ in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def start_flight(tmp_path: Path, database_url: str, redis_url: str, redis_prefix: str) -> Flight:
    from govern.bootstrap import build_services
    from govern.config import load_settings

    cc, grace, strict = FakeUpstream().start(), FakeUpstream(refresh_grace_seconds=30).start(), FakeUpstream().start()
    alerts = AlertInbox()
    home = tmp_path / "instance"
    home.mkdir()
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": database_url,
           "GOVERN_REDIS_URL": redis_url, "GOVERN_REDIS_PREFIX": redis_prefix, "GOVERN_LOG_LEVEL": "WARNING",
           "GOVERN_ALERT_WEBHOOK_URL": alerts.url, "GOVERN_ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "PYTHONPATH": str(ROOT)}
    settings = load_settings({}, home=home, database_url=database_url, redis_url=redis_url, redis_prefix=redis_prefix)
    services = build_services(settings)
    gunicorn = None
    try:
        for step in services.init_steps:
            step(services)
        cc.register_client("cc-client", secret=CLIENT_SECRETS["shop-cc"], scope="orders.read")
        grace.register_client("rt-client", secret=CLIENT_SECRETS["shop-rt-grace"], scope="orders.read")
        strict.register_client("rt-client", secret=CLIENT_SECRETS["shop-rt-strict"], scope="orders.read")
        flight = Flight("", env, services, cc, grace, strict, alerts, None)  # type: ignore[arg-type]
        path = tmp_path / "governance.yaml"
        path.write_text(LANDSCAPE.format(cc=cc.url, grace=grace.url, strict=strict.url))
        done = flight.govern_here("apply", "-f", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        puts = [(["--user", "order-sync"], "client_secret", USER_SECRET)]
        puts += [([cred], "client_secret", value) for cred, value in CLIENT_SECRETS.items()]
        puts += [(["shop-rt-grace", "--principal", "alice"], "refresh_token", grace.issue_refresh_token("rt-client", "alice")),
                 (["shop-rt-strict", "--principal", "bob"], "refresh_token", strict.issue_refresh_token("rt-client", "bob"))]
        for args, fld, value in puts:
            done = flight.govern_here("secrets", "put", *args, "--field", fld, input=value)
            assert done.returncode == 0, done.stdout + done.stderr
        gunicorn = Gunicorn.start(env, tmp_path / "gunicorn.log", ["-c", "python:govern.gunicorn_conf",
                                                                   "--workers", "4", "--threads", "16"])
        flight.gunicorn, flight.base = gunicorn, gunicorn.base
        wait_for(lambda: len(flight.worker_pids()) == 4, 60, "4 gunicorn workers")
        return flight
    except BaseException:
        if gunicorn is not None:
            gunicorn.stop()
        services.close()
        for fake in (cc, grace, strict):
            fake.stop()
        alerts.stop()
        raise


def stop_flight(flight: Flight) -> None:
    flight.gunicorn.stop()
    flight.services.close()
    for fake in (flight.cc, flight.grace, flight.strict):
        fake.stop()
    flight.alerts.stop()
