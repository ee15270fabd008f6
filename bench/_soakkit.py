"""Shared set-up for bench/soak.py and bench/bulkhead.py: a private PostgreSQL database, Redis with a private
prefix, the local secret store, govern under gunicorn with production's settings, and wrk with a Lua script
that counts answers by status and error code (load from C, not from Python)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
GUNICORN = str(Path(PY).with_name("gunicorn"))
GOVERN = str(Path(PY).with_name("govern"))
USER_SECRET = "bench-user-client-secret-value"

# wrk: paced by `delay()` (each connection waits PAUSE ms after an answer), answers counted by status and by
# the JSON `error`/`code` of non-2xx bodies; the counts are printed by done() as one JSON line.
WRK_LUA = r'''
local paths = {}
local methods = {}
local bodies = {}
local hdr = {}
PAUSE_MS = %(pause)d
%(setup)s
local n = 0
counts = {}
init = function(args)
  counts = {}
end
request = function()
  n = n + 1
  local i = (n %% #paths) + 1
  return wrk.format(methods[i], paths[i], hdr[i], bodies[i])
end
delay = function()
  if PAUSE_MS > 0 then return PAUSE_MS end
  return 0
end
response = function(status, headers, body)
  local key = tostring(status)
  if status >= 300 then
    local code = string.match(body or "", '"code"%%s*:%%s*"([^"]+)"') or string.match(body or "", '"error"%%s*:%%s*"([^"]+)"') or "-"
    key = key .. ":" .. code
  end
  counts[key] = (counts[key] or 0) + 1
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%%s": %%d', k, v)) end
  io.write("WRKCOUNTS {" .. table.concat(parts, ", ") .. "}\n")
  io.write(string.format("WRKLAT p50=%%.3f p99=%%.3f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def lua_script(targets: list[tuple[str, str, dict, str | None]], pause_ms: int) -> str:
    """targets: (method, path, headers, body), sent in turn."""
    lines = []
    for i, (method, path, headers, body) in enumerate(targets, start=1):
        h = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
        lines.append(f'paths[{i}] = "{path}"; methods[{i}] = "{method}"; hdr[{i}] = {{{h}}}; '
                     f'bodies[{i}] = {json.dumps(body) if body is not None else "nil"}')
    return WRK_LUA % {"pause": pause_ms, "setup": "\n".join(lines)}


def run_wrk(base: str, script: Path, *, seconds: float, connections: int, threads: int = 1,
            timeout_s: int = 30, background: bool = False, out: Path | None = None):
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", f"{timeout_s}s",
           "-s", str(script), base]
    if background:
        return subprocess.Popen(cmd, stdout=open(out, "w"), stderr=subprocess.STDOUT)
    return parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def parse_wrk(text: str) -> dict:
    counts = json.loads(re.search(r"^WRKCOUNTS (.*)$", text, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = re.search(r"^WRKLAT p50=([\d.]+) p99=([\d.]+)", text, re.M)
    sock = re.search(r"Socket errors: (.*)$", text, re.M)
    return {"counts": counts, "rps": rps, "answers": sum(counts.values()), "p50_ms": float(lat.group(1)),
            "p99_ms": float(lat.group(2)), "socket_errors": sock.group(1) if sock else "none", "raw": text}


class Instance:
    """A govern instance (private PostgreSQL database, Redis prefix, local secret store) and its gunicorn."""

    def __init__(self, tmp: Path, *, env_extra: dict[str, str] | None = None):
        from bench._pg import create_private_database
        from govern.store.db import make_engine, upgrade

        self.tmp = tmp
        self.home = tmp / "instance"
        self.home.mkdir(parents=True)
        self.database_url, self._drop = create_private_database(
            os.environ.get("GOVERN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
        self.redis_url = os.environ.get("GOVERN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        self.redis_prefix = f"govern-bench:{uuid.uuid4().hex[:8]}:"
        engine = make_engine(self.database_url)
        upgrade(engine)
        engine.dispose()
        self.env = {**os.environ, "GOVERN_HOME": str(self.home), "GOVERN_DATABASE_URL": self.database_url,
                    "GOVERN_REDIS_URL": self.redis_url, "GOVERN_REDIS_PREFIX": self.redis_prefix,
                    "GOVERN_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), **(env_extra or {})}
        self.env.pop("GOVERN_SECRET_STORE", None)
        from govern.bootstrap import build_services
        from govern.config import load_settings

        self.services = build_services(load_settings({}, home=self.home, database_url=self.database_url,
                                                     redis_url=self.redis_url, redis_prefix=self.redis_prefix))
        for step in self.services.init_steps:  # as `govern init` does
            step(self.services)
        self.gunicorn = None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def put_secret(self, credential: str, principal: str | None, field: str, value: str) -> None:
        from govern.broker.upstream.secret_refs import CredentialSecrets
        from govern.store.credential_secret_refs import CredentialSecretRefRepo
        from govern.domain.secret import Secret

        secrets = CredentialSecrets(CredentialSecretRefRepo(self.services.sessions), self.services.secret_store, self.services.clock)
        current = secrets.current(credential, principal, field)
        secrets.replace(credential, principal, field, Secret(value),
                        expected_version=current.version if current else None)

    def start(self, workers: int = 2, server: str = "gunicorn", extra: list[str] | None = None) -> None:
        """govern under `server` (bench._common.SERVERS; gunicorn with production's settings)."""
        from bench._common import server_pythonpath, start_server

        env = {**self.env, "PYTHONPATH": server_pythonpath()}
        self.gunicorn, self.base = start_server(server, "govern.wsgi:app()", env, self.tmp / "gunicorn.log",
                                                workers=workers, extra=extra, cwd=ROOT,
                                                threads=int(env.get("GOVERN_WEB_THREADS", "0")) or None)
        self.port = int(self.base.rsplit(":", 1)[1])

    def govern_token(self, user: str) -> str:
        resp = requests.post(self.base + "/oauth/token", auth=(user, USER_SECRET),
                             data={"grant_type": "client_credentials", "scope": "orders.read"}, timeout=30)
        if resp.status_code != 200:
            raise SystemExit(f"error: /oauth/token answered {resp.status_code}: {resp.text[:300]}")
        body = resp.json()
        return body["access_token"], body.get("expires_in")

    def pids(self) -> list[int]:
        out, todo = [], [self.gunicorn.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
        return sorted(set(out))

    def rss_kb_and_fds(self) -> tuple[int, int, list[int]]:
        rss = fds = 0
        pids = self.pids()
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                pass
        return rss, fds, pids

    def close(self) -> None:
        if self.gunicorn is not None:
            try:
                os.killpg(self.gunicorn.pid, signal.SIGTERM)
                self.gunicorn.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.gunicorn.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.services.close()
        try:
            import redis

            r = redis.Redis.from_url(self.redis_url)
            for key in r.scan_iter(match=self.redis_prefix + "*"):
                r.delete(key)
        except Exception as exc:  # noqa: BLE001 - clean-up only
            print(f"note: redis clean-up failed: {exc}", file=sys.stderr)
        self._drop()
