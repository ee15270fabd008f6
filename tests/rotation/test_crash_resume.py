"""Issue #16, rotation edges, as an operator meets them: a rotation process SIGKILLed after each step, then
`govern rotate NAME --commit` (a process of its own) resumes the run. At every moment the latest version at
the secret's path in the store authenticates at govern's `POST /oauth/token` (the secret is an integration
user's govern client secret, rotated with a one-hour overlap), and only versions that still authenticate
are staged `previous`. The landscape comes from `govern apply`, the first secret from `govern secrets put`.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from govern.rotation import machine
from govern.store.tables import RotationRun, SecretRef, SecretVersion
from tests.procs import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.slow]
NAME = "integration_user/order-sync/client_secret"
LANDSCAPE = """\
apiVersion: govern/v1
kind: Landscape
systems:
  - {id: erp, name: ERP, kind: erp, scopes: [orders.read]}
credentials:
  - id: erp-cc
    system: erp
    protocol: oauth2_client_credentials
    token_url: https://erp.example/token
    client_id: erp-client
    scopes: [orders.read]
    principals: [{name: default}]
named_credentials:
  - {id: erp-api, credential: erp-cc, url: "https://erp.example/api"}
integration_users:
  - id: order-sync
    name: Order sync
    owner: erp-team@example.com
    justification: Reads orders; its client secret is rotated in the crash tests.
    review_date: 2099-01-01
    ip_ranges: [127.0.0.0/8]
    scopes: [orders.read]
    permission_sets: [orders]
    rotation: {every: 90d, overlap: 1h}
permission_sets:
  - id: orders
    scopes: [orders.read]
    api_types: [REST]
    grants:
      - {named_credential: erp-api, principal: default, methods: [GET], paths: ["/orders"]}
"""
# After each step's state is written, and once inside `finish` after the store was touched but before the
# state was written (the promotion is done, the run still says `tested`).
CRASHES = [("after_step", step) for step in machine.STEPS[:3]] + [("before_persist", "finish"), ("after_step", "finish")]


@pytest.fixture
def instance(tmp_path, postgres_url):
    from govern.app import create_app
    from govern.bootstrap import build_services
    from govern.config import load_settings

    home = tmp_path / "instance"
    home.mkdir()
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": postgres_url, "GOVERN_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT)}
    env.pop("GOVERN_REDIS_URL", None)
    services = build_services(load_settings({}, home=home, database_url=postgres_url))
    for step in services.init_steps:
        step(services)
    server = make_server("127.0.0.1", 0, create_app({}, services=services), threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield {"env": env, "services": services, "base": f"http://127.0.0.1:{server.server_port}", "home": tmp_path}
    server.shutdown()
    services.close()


def _run(env, *args, input=None):
    return subprocess.run([sys.executable, *args], input=input, env=env, cwd=str(ROOT), capture_output=True,
                          text=True, timeout=120)


def _authenticates(base: str, secret: str) -> bool:
    resp = requests.post(base + "/oauth/token", data={"grant_type": "client_credentials", "scope": "orders.read"},
                         auth=("order-sync", secret), timeout=30)
    assert resp.status_code in (200, 401), resp.text
    return resp.status_code == 200


def _state(services):
    with services.sessions() as s:
        ref = s.execute(sa.select(SecretRef).where(SecretRef.external_id == NAME)).scalar_one()
        stages = {v.version: v.stage for v in s.execute(sa.select(SecretVersion).where(
            SecretVersion.secret_ref_id == ref.id)).scalars()}
        run = s.execute(sa.select(RotationRun).where(RotationRun.secret_ref_id == ref.id)
                        .order_by(RotationRun.id.desc()).limit(1)).scalar_one_or_none()
        return ref, stages, run


def test_a_crash_after_each_step_is_resumed_by_rotate_and_the_latest_version_always_works(instance):
    env, services, base = instance["env"], instance["services"], instance["base"]
    path = instance["home"] / "governance.yaml"
    path.write_text(LANDSCAPE)
    done = _run(env, "-m", "govern", "apply", "-f", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    done = _run(env, "-m", "govern", "secrets", "put", "--user", "order-sync", "--field", "client_secret",
                input="crash-test-first-client-secret")
    assert done.returncode == 0, done.stdout + done.stderr
    store = services.secret_store
    ref, _, _ = _state(services)

    def latest() -> str:
        return store.get(ref.path).reveal()

    seen, revoked = [latest()], set()
    assert _authenticates(base, seen[0])
    for point, step in CRASHES:
        crashed = _run(env, "-m", "tests.rotation.crash_proc", NAME, point, step)
        assert crashed.returncode == -9, (point, step, crashed.stdout, crashed.stderr)  # SIGKILL
        _, stages, run = _state(services)
        assert _authenticates(base, latest()), (point, step)  # a reader of the latest version is never broken
        if (point, step) == ("after_step", "finish"):
            assert run.state == machine.FINISHED and latest() not in seen  # it died after a whole rotation
            seen.append(latest())
        else:
            assert run.state in machine.ACTIVE, (point, step, run.state)
            if step != "finish":
                assert latest() == seen[-1]  # the pending secret is staged apart until it is promoted
            wait_for(lambda: _state(services)[2].claimed_until.replace(tzinfo=dt.UTC)
                     < dt.datetime.now(dt.UTC), 30, "the dead process's lease ran out")
        if step == "create_pending":  # once: the dry run says what --commit will do
            planned = _run(env, "-m", "govern", "rotate", NAME)
            assert planned.returncode == 0 and "would_resume" in planned.stdout, planned.stdout + planned.stderr
            assert "run 1 at set" in planned.stdout, planned.stdout
        resumed = _run(env, "-m", "govern", "rotate", NAME, "--commit")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert resumed.stdout.startswith("finished"), resumed.stdout
        if (point, step) != ("after_step", "finish"):
            assert f"resumed at {machine.next_step(run.state)}" in resumed.stdout, resumed.stdout
        new = latest()
        assert new not in seen and _authenticates(base, new), (point, step)
        seen.append(new)
        ref_now, stages, run = _state(services)
        assert run.state == machine.FINISHED and stages[ref_now.current_version] == "current"
        assert resumed.stdout.rstrip().endswith(f"-> {ref_now.current_version}"), resumed.stdout
        assert store.metadata(ref.path).version == ref_now.current_version
        # Many rotations inside one overlap: the version before the current one still works and is the
        # only `previous`; every older one is revoked and no longer authenticates.
        previous = [v for v, stage in stages.items() if stage == "previous"]
        assert len(previous) == 1 and _authenticates(base, store.get(ref.path, version=previous[0]).reveal())
        for version, stage in stages.items():
            if stage == "revoked" and version not in revoked:
                assert not _authenticates(base, store.get(ref.path, version=version).reveal()), version
                revoked.add(version)
    # One new version per rotation, none written twice.
    assert len(seen) == len(CRASHES) + 2
    assert store.metadata(ref.path).versions == tuple(range(1, len(seen) + 1))
