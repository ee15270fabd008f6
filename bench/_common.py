"""Shared pieces of bench/broker.py and bench/proxy.py: start govern under gunicorn, OpenBao and nginx, wait
for them, read a process tree's CPU from /proc, and drive load with wrk (closed loop) and hey (fixed rate).

The load comes from C and Go, never from Python: a `requests` client in threads spends more CPU per call
than govern does on two cores (issue #20), so its figures measured the client. The Python harness only sets
up, starts, parses and prints.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
PY = sys.executable
GUNICORN = str(Path(PY).with_name("gunicorn"))
USER_SECRET = "bench-user-client-secret-value"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def wait_http(url: str, *, timeout: float = 60.0, headers: dict | None = None, what: str = "",
              proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers below 500, with a deadline (and fail early if `proc` exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"error: {what or url} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1, headers=headers).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"error: {what or url} did not come up in {timeout:.0f}s")


def stop(proc: subprocess.Popen | None, *, group: bool = False) -> None:
    """SIGTERM (the process group when it was started in its own session), then SIGKILL after 15 s."""
    if proc is None or proc.poll() is not None:
        return
    kill = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
    try:
        kill(signal.SIGTERM)
        proc.wait(15)
    except subprocess.TimeoutExpired:
        kill(signal.SIGKILL)
        proc.wait(15)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------- CPU accounting
def process_tree(pid: int) -> list[int]:
    """A process and its descendants (gunicorn's master and workers), from /proc/<pid>/task/*/children."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return sorted(set(out))


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of each process (its own accounting in /proc/<pid>/stat), summed."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def thread_seconds(pids: list[int]) -> dict[tuple[int, int], float]:
    """utime + stime of every thread of each process (/proc/<pid>/task/<tid>/stat)."""
    out = {}
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[(pid, int(task.name))] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


class CpuMeter:
    """CPU seconds a fixed set of processes used between start() and stop(); `split` says how much of it
    the processes' main threads used (in a gthread worker: gunicorn's event loop, accepting, polling and
    handing connections to the thread pool) and how much the busiest other thread used."""

    def __init__(self, root_pid: int):
        self.pids = process_tree(root_pid)
        self._before = 0.0
        self._threads: dict[tuple[int, int], float] = {}
        self.split: tuple[float, float] = (0.0, 0.0)

    def start(self) -> None:
        self._threads = thread_seconds(self.pids)
        self._before = cpu_seconds(self.pids)

    def stop(self) -> float:
        used = cpu_seconds(self.pids) - self._before
        after = thread_seconds(self.pids)
        delta = {k: v - self._threads.get(k, 0.0) for k, v in after.items()}
        main = sum(v for (pid, tid), v in delta.items() if pid == tid)
        busiest = max((v for (pid, tid), v in delta.items() if pid != tid), default=0.0)
        self.split = (main, busiest)
        return used


# ---------------------------------------------------------------------------------------------------- servers
def start_gunicorn(app_spec: str, env: dict[str, str], log: Path, *, workers: int, threads: int | None = None,
                   cwd: Path = ROOT, extra: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """govern (or any WSGI app) under gunicorn with production's settings (govern.gunicorn_conf: gthread,
    keep-alive 75 s, no access log), on a free port, up and answering /healthz. Returns (process, base URL)."""
    port = free_port()
    cmd = [GUNICORN, "-c", "python:govern.gunicorn_conf", "-w", str(workers), "-b", f"127.0.0.1:{port}",
           "--log-level", "warning"]
    if threads:
        cmd += ["--threads", str(threads)]
    cmd += extra or []
    # A file, not a pipe: an unread pipe fills up and blocks the workers' logging.
    proc = subprocess.Popen([*cmd, app_spec], cwd=str(cwd), env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "wb"), start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", what="gunicorn", proc=proc)
    # Every worker must be up before CPU is counted: the process tree is read once per meter.
    deadline = time.monotonic() + 60
    while len(process_tree(proc.pid)) < workers + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc, base


SERVERS = ("gunicorn", "granian", "waitress")


def server_pythonpath() -> str:
    """The server's PYTHONPATH: this tree first, then the caller's (where granian or waitress may be)."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def start_server(server: str, app_spec: str, env: dict[str, str], log: Path, *, workers: int,
                 threads: int | None = None, cwd: Path = ROOT, extra: list[str] | None = None,
                 ) -> tuple[subprocess.Popen, str]:
    """govern under `server` on a free port, up and answering /healthz (every worker started). gunicorn runs
    with production's settings (govern.gunicorn_conf); the others for comparison (issue #20): granian's WSGI
    interface (`--workers`, `--blocking-threads` = threads), waitress (one process: `workers` is ignored).
    granian and waitress must be importable (PYTHONPATH or the venv). `extra`: more options for the server."""
    if server == "gunicorn":
        return start_gunicorn(app_spec, env, log, workers=workers, threads=threads, cwd=cwd, extra=extra)
    port = free_port()
    threads = threads or 64
    if server == "granian":
        target = app_spec.removesuffix("()")
        cmd = [PY, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--blocking-threads", str(threads), "--log-level", "warning",
               "--no-ws", "--http", "1", *(extra or []), *(["--factory"] if app_spec.endswith("()") else []), target]
        expected = workers + 1
    elif server == "waitress":
        cmd = [PY, "-m", "waitress", "--listen", f"127.0.0.1:{port}", f"--threads={threads}",
               "--connection-limit=1000", *(extra or []), *(["--call"] if app_spec.endswith("()") else []),
               app_spec.removesuffix("()")]
        expected = 1
    else:
        raise SystemExit(f"error: unknown server {server!r} (one of {', '.join(SERVERS)})")
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", what=server, proc=proc)
    deadline = time.monotonic() + 60
    while len(process_tree(proc.pid)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc, base


class OpenBaoKv:
    """`bao server -dev` (the anchor for a token read): one KV v2 secret, read with X-Vault-Token."""

    def __init__(self, workdir: Path):
        from tests.fixtures_openbao import OpenBao, bao_binary

        self.bao = OpenBao(bao_binary(), workdir).start()
        self.addr, self.token = self.bao.addr, self.bao.token
        self.path = "/v1/secret/data/bench"
        resp = requests.post(self.addr + self.path, headers={"X-Vault-Token": self.token}, timeout=10,
                             json={"data": {"access_token": "anchor-token-value-" + "x" * 40, "token_type": "Bearer"}})
        resp.raise_for_status()

    @property
    def pid(self) -> int:
        return self.bao.process.pid

    def stop(self) -> None:
        self.bao.stop()


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
{servers}
}}
"""


def start_nginx(tmp: Path, servers: str) -> subprocess.Popen:
    """nginx from Debian in the foreground, with a generated config in `tmp`."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise SystemExit("error: nginx is not installed (apt-get install -y nginx-light)")
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, servers=servers))
    return subprocess.Popen([binary, "-p", str(tmp), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "nginx.log", "wb"), start_new_session=True)


# ------------------------------------------------------------------------------------------------------ load
@dataclass
class Load:
    """One load run: throughput, latency, answers, and errors (non-2xx and socket errors)."""

    tool: str
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_s: float = 0.0  # CPU of the metered processes during the run, if any
    main_thread_s: float = 0.0  # of which their main threads (gunicorn's event loop)
    busiest_thread_s: float = 0.0  # and the busiest other thread (e.g. the decision log's writer)

    def cpu_ms_per_request(self) -> float:
        return self.cpu_s * 1000 / self.requests if self.requests else float("nan")

    def cpu_line(self) -> str:
        if not self.cpu_s:
            return ""
        return (f"  govern CPU {self.cpu_ms_per_request():.3f} ms/req (main threads {self.main_thread_s / self.cpu_s:.0%}, "
                f"busiest other thread {self.busiest_thread_s / self.cpu_s:.0%})")

    def line(self) -> str:
        return (f"{self.rps:8.0f} req/s  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  "
                f"({self.requests} answers, {self.errors} errors, {self.tool})")


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}

# wrk sends one request shape over and over; a POST body and headers come from a small Lua script.
WRK_REQUEST_LUA = """
wrk.method = "{method}"
wrk.body = {body}
{headers}
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk(url: str, *, seconds: int, connections: int, threads: int = 1, method: str = "GET",
        headers: dict[str, str] | None = None, body: str | None = None, tmp: Path,
        meter: CpuMeter | None = None) -> Load:
    """A closed-loop wrk run (--latency for p50/p99). With a meter, the CPU its processes used meanwhile."""
    script = tmp / f"wrk-{os.getpid()}-{time.monotonic_ns()}.lua"
    lines = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in (headers or {}).items())
    script.write_text(WRK_REQUEST_LUA.format(method=method, body=_lua_string(body) if body is not None else "nil",
                                             headers=lines))
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
           "--latency", "-s", str(script), url]
    if meter:
        meter.start()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: wrk exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    out = done.stdout
    cpu = meter.stop() if meter else 0.0
    script.unlink()
    load = parse_wrk(out, cpu)
    if meter:
        load.main_thread_s, load.busiest_thread_s = meter.split
    return load


def parse_wrk(text: str, cpu_s: float = 0.0) -> Load:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if not m:
            raise SystemExit(f"error: wrk printed no {pct}% latency:\n{text}")
        return float(m.group(1)) * _UNIT_MS[m.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s+(\d+) requests in", text, re.M)
    if not rps or not total:
        raise SystemExit(f"error: cannot read wrk's output:\n{text}")
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return Load("wrk", float(rps.group(1)), int(total.group(1)), latency("50"), latency("99"), errors, cpu_s)


def hey_fixed_rate(url: str, *, rate: int, seconds: int, headers: dict[str, str] | None = None,
                   meter: CpuMeter | None = None) -> Load:
    """hey on one connection at a fixed `rate` (hey -c 1 -q RATE); p50/p99 from its per-request CSV.

    hey's CSV has 0.1 ms resolution; hey skips a tick when an answer is late, so latency is counted from
    each request's send (the pacing of wrk2 would charge the wait too)."""
    cmd = ["hey", "-c", "1", "-q", str(rate), "-z", f"{seconds}s", "-o", "csv"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if meter:
        meter.start()
    started = time.monotonic()
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - started
    cpu = meter.stop() if meter else 0.0
    latencies, errors = [], 0
    for line in out.splitlines()[1:]:
        parts = line.split(",")
        if len(parts) < 7:
            continue
        latencies.append(float(parts[0]) * 1000)
        if not parts[6].startswith("2"):
            errors += 1
    if not latencies:
        raise SystemExit(f"error: hey printed no answers for {url}")
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    load = Load("hey", len(latencies) / elapsed, len(latencies), statistics.median(latencies), q[98], errors, cpu)
    if meter:
        load.main_thread_s, load.busiest_thread_s = meter.split
    return load


def py_spy(pids: list[int], seconds: int, out_dir: Path, *, rate: int = 250) -> list[subprocess.Popen]:
    """Start `py-spy record --format raw` (active threads only: py-spy leaves idle ones out) on each pid for `seconds` (collapsed stacks, one file per pid)."""
    binary = str(Path(PY).with_name("py-spy"))
    out_dir.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([binary, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate),
                              "--format", "raw", "-o", str(out_dir / f"worker-{pid}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]
