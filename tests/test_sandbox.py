"""`govern sandbox` (issue #17): its OAuth server and API over a real socket, what it logs, and its refusals."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from govern.sandbox import SandboxSecrets, SandboxServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sandbox():
    lines: list[str] = []
    generated = SandboxSecrets.generate()
    server = SandboxServer(generated, port=0, log=lines.append).start()
    yield server, generated, lines
    server.stop()


def _token(server, generated, **form) -> requests.Response:
    return requests.post(f"{server.url}/oauth/token", data=form, timeout=10,
                         auth=(generated.client_id, generated.client_secret.reveal()))


def test_client_credentials_refresh_rotation_and_api_key(sandbox):
    server, generated, lines = sandbox
    cc = _token(server, generated, grant_type="client_credentials", scope="orders.read")
    assert cc.status_code == 200, cc.text
    body = cc.json()
    assert body["scope"] == "orders.read" and "refresh_token" not in body
    orders = requests.get(f"{server.url}/api/orders", headers={"Authorization": f"Bearer {body['access_token']}"},
                          timeout=10)
    assert orders.status_code == 200 and orders.json()["caller"]["authenticated_by"] == "bearer_token"
    # RFC 6749 section 6 with rotation: the answer carries a new refresh token and the old one is dead
    first = _token(server, generated, grant_type="refresh_token", refresh_token=generated.refresh_token.reveal())
    assert first.status_code == 200, first.text
    rotated = first.json()["refresh_token"]
    assert rotated != generated.refresh_token.reveal()
    who = requests.get(f"{server.url}/api/whoami", headers={"Authorization": f"Bearer {first.json()['access_token']}"},
                       timeout=10).json()
    assert who["user"] == "sandbox-user" and who["client_id"] == "govern-sandbox"
    replay = _token(server, generated, grant_type="refresh_token", refresh_token=generated.refresh_token.reveal())
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert _token(server, generated, grant_type="refresh_token", refresh_token=rotated).status_code == 200
    # the API key
    items = requests.get(f"{server.url}/api/items", headers={"X-API-Key": generated.api_key.reveal()}, timeout=10)
    assert items.status_code == 200 and items.json()["caller"] == {"authenticated_by": "api_key"}
    assert requests.get(f"{server.url}/api/items", headers={"X-API-Key": "wrong"}, timeout=10).status_code == 401
    assert requests.get(f"{server.url}/api/items", timeout=10).status_code == 401
    bad = requests.post(f"{server.url}/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(generated.client_id, "not-the-secret"), timeout=10)
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    # one line per request, saying what arrived; never a secret or a token
    assert "sandbox: POST /oauth/token grant_type=client_credentials client_id=govern-sandbox -> 200" in lines
    assert "sandbox: POST /oauth/token grant_type=refresh_token client_id=govern-sandbox -> 200 (refresh token rotated)" \
        in lines
    assert "sandbox: POST /oauth/token grant_type=refresh_token client_id=govern-sandbox -> 400 invalid_grant" in lines
    assert "sandbox: GET /api/items api_key=valid -> 200" in lines
    assert "sandbox: GET /api/items api_key=wrong -> 401 invalid_token" in lines
    logged = "\n".join(lines)
    for value in (generated.client_secret.reveal(), generated.refresh_token.reveal(), generated.api_key.reveal(),
                  rotated, body["access_token"], "not-the-secret"):
        assert value not in logged
    assert "sbx_" not in repr(generated)


def _govern(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
    base.update(env)
    return subprocess.run([sys.executable, "-m", "govern", *args], cwd=cwd, env=base, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_refused_in_production_with_one_line(tmp_path):
    production = {"GOVERN_ENV": "production", "GOVERN_SECRET_KEY": "k" * 40, "GOVERN_MASTER_KEY": "unused-here",
                  "GOVERN_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    for args in (["sandbox"], ["serve", "--with-sandbox"]):
        proc = _govern(args, tmp_path, **production)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip() == ("error: govern sandbox is a development tool and does not run with "
                                       "GOVERN_ENV=production"), (args, proc.stderr)
        assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_without_the_example_landscape_it_says_what_to_apply(tmp_path):
    env = {"GOVERN_ADMIN_PASSWORD": "a-long-enough-password"}
    assert _govern(["init"], tmp_path, **env).returncode == 0
    proc = _govern(["sandbox", "--port", "0"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: the landscape has no sandbox-client-credentials, sandbox-refresh-token, "
                                   "sandbox-api-key: run `govern apply -f examples/governance.yaml` first (it "
                                   "declares the sandbox)")


def test_the_example_landscape_applies_whole_with_the_sandbox(runner, services):
    """examples/governance.yaml, sandbox included, is accepted with no error or warning; its sandbox parts are
    what `govern sandbox` stores secrets for and what README "Try it" calls."""
    import sqlalchemy as sa

    from govern.sandbox.provision import SandboxSecrets
    from govern.store.tables import ExternalCredential, IntegrationUser, NamedCredential

    result = runner.invoke(["apply", "-f", str(ROOT / "examples" / "governance.yaml")])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output and "error" not in result.output
    with services.sessions() as s:
        credentials = set(s.execute(sa.select(ExternalCredential.external_id)).scalars())
        named = {row.external_id: row for row in s.execute(sa.select(NamedCredential)).scalars()}
        user = s.execute(sa.select(IntegrationUser).where(IntegrationUser.external_id == "sandbox-app")).scalar_one()
    assert {c for c, *_ in SandboxSecrets.generate().placements()} <= credentials
    for name in ("sandbox-orders", "sandbox-orders-as-user", "sandbox-items"):
        assert named[name].url == "http://127.0.0.1:8900"
    assert user.allowed_cidrs == ["127.0.0.1/32"]


def test_govern_sandbox_alone_stores_its_secrets_logs_and_stops_on_ctrl_c(tmp_path):
    import re
    import signal
    import time

    env = {"GOVERN_ADMIN_PASSWORD": "a-long-enough-password"}
    assert _govern(["init"], tmp_path, **env).returncode == 0
    assert _govern(["apply", "-f", str(ROOT / "examples" / "governance.yaml")], tmp_path).returncode == 0
    base = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
    out_path, err_path = tmp_path / "out.log", tmp_path / "err.log"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "govern", "sandbox", "--port", "0"], cwd=tmp_path, env=base,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
    try:
        deadline, url = time.monotonic() + 60, None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"OAuth server and API on (http://127\.0\.0\.1:\d+)", out_path.read_text())
            url = found.group(1) if found else None
            time.sleep(0.1)  # polling interval, with a deadline
        assert url, out_path.read_text() + err_path.read_text()
        assert requests.get(url + "/", timeout=10).json()["name"] == "govern sandbox"
        assert requests.get(url + "/api/items", timeout=10).status_code == 401
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0
    out, err = out_path.read_text(), err_path.read_text()
    assert "credential/sandbox-api-key/api_key: set on " in out and "next steps" in out
    assert "sandbox: GET / - -> 200" in err and "sandbox: GET /api/items no credential -> 401 invalid_token" in err
    assert err.rstrip().endswith("sandbox stopped") and "Traceback" not in err
    status = _govern(["secrets", "status"], tmp_path).stdout
    for ref in ("credential/sandbox-client-credentials/client_secret", "credential/sandbox-refresh-token/client_secret",
                "credential/sandbox-refresh-token/principal/sandbox-user/refresh_token",
                "credential/sandbox-api-key/api_key"):
        assert ref in status
    assert "sbx_" not in out + err + status
