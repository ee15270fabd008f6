"""Real processes for tests: a free port, polling with a deadline, and govern served by a real gunicorn.

`Gunicorn.start(env, log_path, options)` runs `gunicorn <options> <app>` in a process group of its own (its
workers included), on a free port unless one is given, its output in `log_path` (a file: an unread pipe could
block gunicorn's logging), and returns once /healthz answers 200. If gunicorn exits first, or the deadline
passes, the test fails with the tail of that log. `stop()` sends SIGTERM to the group and SIGKILL after a
grace; `kill()` sends SIGKILL at once (no shutdown hook, no atexit). `serving(...)` is the same as a context
manager that always stops it, and adds the log's tail to any error raised inside.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import requests

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
T = TypeVar("T")
# The servers running now: a failing test's report carries their logs' tails (tests/conftest.py), since an
# assertion in the test body never passes through the fixture that started them.
RUNNING: set[Gunicorn] = set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition", step: float = 0.05) -> T:
    """Poll `predicate` until it returns something true (returned), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached before the deadline"
        time.sleep(step)


class Gunicorn:
    """One gunicorn master (and its workers) serving govern on 127.0.0.1."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path):
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.base = f"http://127.0.0.1:{port}"

    @classmethod
    def start(cls, env: Mapping[str, str], log_path: Path, options: Sequence[str] = (), *,
              app: str = "govern.wsgi:app()", port: int | None = None, deadline: float = 60.0) -> Gunicorn:
        port = port or free_port()
        with open(log_path, "ab") as log:  # gunicorn keeps its own descriptor
            proc = subprocess.Popen([GUNICORN, *options, "--bind", f"127.0.0.1:{port}", app], cwd=str(ROOT),
                                    env=dict(env), stdout=log, stderr=log, start_new_session=True)
        server = cls(proc, port, log_path)
        RUNNING.add(server)
        try:
            server.wait_healthy(deadline)
        except BaseException:
            server.stop()
            raise
        return server

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, deadline: float = 60.0) -> None:
        def up() -> bool:
            assert self.alive(), f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}"
            try:
                return requests.get(self.base + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_for(up, deadline, "gunicorn answering /healthz")
        except AssertionError as exc:
            exc.add_note(f"gunicorn log ({self.log_path}):\n{self.log_tail()}")
            raise

    def worker_pids(self) -> set[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return {int(p) for p in out.stdout.split()}

    def signal(self, sig: int) -> None:
        """Send `sig` to the master and its workers."""
        os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM to the group, SIGKILL if it has not exited after `grace` seconds; the exit status."""
        RUNNING.discard(self)
        if self.alive():
            try:
                self.signal(signal.SIGTERM)
                return self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
            return self.kill()
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL to the whole group now: nothing of it runs another line."""
        RUNNING.discard(self)
        try:
            self.signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.proc.wait(30)


@contextmanager
def serving(env: Mapping[str, str], log_path: Path, options: Sequence[str] = (), **kw) -> Iterator[Gunicorn]:
    """`Gunicorn.start(...)`, stopped on the way out; an error raised inside carries the log's tail."""
    server = Gunicorn.start(env, log_path, options, **kw)
    try:
        yield server
    except Exception as exc:
        exc.add_note(f"gunicorn log ({log_path}):\n{server.log_tail()}")
        raise
    finally:
        server.stop()
