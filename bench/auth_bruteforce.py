"""Client-secret guessing at /oauth/token: the server CPU it costs, and whether the client still gets in
(issue #14, `bench/auth_bruteforce.py`).

    python bench/auth_bruteforce.py [--requests 1000] [--concurrency 4] [--no-redis]
    PYTHONPATH=/work/main python /work/wt-auth/bench/auth_bruteforce.py   # the same against another tree

The govern code measured is the tree on PYTHONPATH (else this checkout). Starts, on free ports, and
stops at the end: govern under gunicorn (gthread, 2 workers) on a migrated SQLite instance, with Redis
(a private key prefix) unless --no-redis, and GOVERN_TRUSTED_PROXIES=127.0.0.1/32 so that the load
generator can speak for two client addresses through X-Forwarded-For:
- the attacker, 10.66.0.1, inside the integration user's ranges (the worst case: a check is due);
- the integration itself, 10.5.0.1.

Then: `hey` sends --requests wrong secrets for one client id from the attacker's address; the CPU time
(utime + stime, from /proc/<pid>/stat) of the gunicorn master and workers is read before and after; at
once after, the right secret is sent from the integration's address.
Last line: `cpu_per_wrong_secret_ms=... right_secret_status=...`.
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parents[1]
TREE = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or HERE).resolve()
sys.path.insert(0, str(TREE))
USER = "order-sync"
SECRET = "bench-right-client-secret-value"
ATTACKER, INTEGRATION = "10.66.0.1", "10.5.0.1"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"error: {what} did not come up in {timeout:.0f}s")


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (gunicorn's master and workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def token_request(base: str, secret: str, address: str) -> requests.Response:
    auth = base64.b64encode(f"{USER}:{secret}".encode()).decode()
    return requests.post(base + "/oauth/token", data={"grant_type": "client_credentials"}, timeout=30,
                         headers={"Authorization": f"Basic {auth}", "X-Forwarded-For": address})


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--no-redis", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    hey = shutil.which("hey")
    if not hey:
        raise SystemExit("error: `hey` is not installed (apt-get install -y hey)")

    from govern.bootstrap import build_services
    from govern.config import load_settings
    from govern.store.db import make_engine, upgrade
    from tests.factories import make_landscape

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-auth-"))
    home = tmp / "instance"
    home.mkdir()
    database_url = f"sqlite:///{tmp / 'govern.db'}"
    redis_url = None if args.no_redis else os.environ.get("GOVERN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_prefix = f"govern-bench:{uuid.uuid4().hex[:8]}:"
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    gunicorn = None
    try:
        settings = load_settings({}, home=home, database_url=database_url)
        services = build_services(settings)
        for step in services.init_steps:  # as `govern init` does: keys, first material
            step(services)
        make_landscape(services, user=USER, client_secret=SECRET, cidrs=("10.0.0.0/8",))
        services.close()

        port = free_port()
        env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_DATABASE_URL": database_url,
               "GOVERN_TRUSTED_PROXIES": "127.0.0.1/32", "GOVERN_LOG_LEVEL": "WARNING", "PYTHONPATH": str(TREE)}
        if redis_url:
            env.update(GOVERN_REDIS_URL=redis_url, GOVERN_REDIS_PREFIX=redis_prefix)
        log = open(tmp / "gunicorn.log", "wb")
        gunicorn = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "gthread",
                                     "--threads", "8", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                                     "govern.wsgi:app()"], cwd=str(TREE), env=env, stdout=subprocess.DEVNULL,
                                    stderr=log, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(base + "/healthz", timeout=1).status_code == 200, 60, "govern under gunicorn")
        # Warm both workers up (the token endpoint's first use builds its server and loads the signing key).
        for _ in range(8):
            status = token_request(base, SECRET, INTEGRATION).status_code
            if status != 200:
                raise SystemExit(f"error: the right secret answered {status} before the attack")
        progress(f"govern up ({TREE}); attacking")

        pids = process_tree(gunicorn.pid)
        before = cpu_seconds(pids)
        wall = time.perf_counter()
        auth = base64.b64encode(f"{USER}:wrong-secret-guess".encode()).decode()
        result = subprocess.run([hey, "-n", str(args.requests), "-c", str(args.concurrency), "-m", "POST",
                                 "-T", "application/x-www-form-urlencoded", "-d", "grant_type=client_credentials",
                                 "-H", f"Authorization: Basic {auth}", "-H", f"X-Forwarded-For: {ATTACKER}",
                                 base + "/oauth/token"], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - wall
        used = cpu_seconds(pids) - before
        right = token_request(base, SECRET, INTEGRATION)
        statuses = dict((int(code), int(n)) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", result.stdout))
        per_request_ms = used * 1000 / args.requests
        print(f"tree: {TREE}")
        print(f"wrong secrets sent: {args.requests} from {ATTACKER} ({args.concurrency} connections, {wall:.2f} s)")
        print(f"answers: {', '.join(f'{n} x {code}' for code, n in sorted(statuses.items()))}")
        print(f"server CPU (gunicorn master + 2 workers): {used * 1000:.0f} ms, {per_request_ms:.2f} ms per wrong secret")
        print(f"right secret from {INTEGRATION} at once after: {right.status_code}")
        print(f"cpu_per_wrong_secret_ms={per_request_ms:.2f} right_secret_status={right.status_code}")
    finally:
        if gunicorn is not None:
            os.killpg(gunicorn.pid, signal.SIGTERM)
            try:
                gunicorn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(gunicorn.pid, signal.SIGKILL)
        if redis_url:
            import redis

            client = redis.Redis.from_url(redis_url)
            for key in client.scan_iter(f"{redis_prefix}*"):
                client.delete(key)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
