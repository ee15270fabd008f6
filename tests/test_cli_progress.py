"""Issue #17, "the CLI shows its work": a progress bar for `govern apply` and `govern audit` on a terminal (a
pseudo-terminal here, through the `pty` module), nothing extra through a pipe; a real apply ends with an
`applied:` summary; the worker logs one line per pass; empty lists say so."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "governance.yaml"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
    env.update(GOVERN_HOME=str(home), GOVERN_ADMIN_PASSWORD="a-long-enough-password")
    return env


def _in_pty(args: list[str], env: dict[str, str], deadline_s: float = 120) -> tuple[int, str]:
    """Run `govern ARGS` with stdin, stdout and stderr on a pseudo-terminal; return (exit code, what it drew)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "govern", *args], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every copy of the slave side is closed (the process ended)
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            pytest.fail(f"govern {' '.join(args)} did not finish within {deadline_s:g} s")
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def _piped(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "govern", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "instance"
    proc = _piped(["init"], _env(home))
    assert proc.returncode == 0, proc.stderr
    return home


def test_apply_and_audit_draw_a_progress_bar_on_a_terminal(home, tmp_path):
    code, drawn = _in_pty(["apply", "-f", str(EXAMPLE)], _env(home))
    assert code == 0, drawn
    assert "applying  [" in drawn and "100%" in drawn, drawn
    assert "wrote systems" in drawn or "wrote credentials" in drawn or "done" in drawn, drawn
    assert "applied: 49 created, 0 updated, 0 deleted in " in drawn, drawn
    code, drawn = _in_pty(["audit", "--out", str(tmp_path / "r.json")], _env(home))
    assert code == 0, drawn
    assert "auditing  [" in drawn and "100%" in drawn, drawn
    assert "findings: critical=" in drawn


def test_through_a_pipe_there_is_no_progress_bar(home, tmp_path):
    proc = _piped(["apply", "-f", str(EXAMPLE)], _env(home))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2] == "plan: 49 to create, 0 to update, 0 unchanged, 0 to delete"
    assert lines[-1].startswith("applied: 49 created, 0 updated, 0 deleted in ") and lines[-1].endswith(" s")
    assert proc.stderr == ""
    again = _piped(["apply", "-f", str(EXAMPLE), "--dry-run"], _env(home))
    assert again.stdout.splitlines()[-2:] == ["plan: 0 to create, 0 to update, 49 unchanged, 0 to delete",
                                              "dry run: nothing was written"]
    assert again.stderr == ""
    audit = _piped(["audit", "--out", str(tmp_path / "r.json")], _env(home))
    assert audit.returncode == 0, audit.stderr
    assert audit.stdout == ""
    assert audit.stderr.splitlines() == [next(line for line in audit.stderr.splitlines()
                                                if line.startswith("findings: "))]
    for text in (proc.stdout, proc.stderr, audit.stderr):
        assert "\r" not in text and "%" not in text and "[#" not in text


def test_worker_logs_each_pass_and_once_claims_no_period(home):
    proc = _piped(["worker", "--once"], _env(home))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].endswith("started; one pass") and "every" not in proc.stderr
    assert lines[1].startswith("pass 1: rotation nothing; queued_calls nothing; signing_keys nothing; alerts nothing; "
                               ), lines
    assert "; 0 failed (" in lines[1] and len(lines) == 3, lines
    assert lines[-1] == "worker stopped"


def test_empty_lists_say_so(home):
    env = _env(home)
    assert _piped(["rotate", "history"], env).stdout.startswith("no rotation runs yet")
    assert _piped(["audit", "suppressions"], env).stdout == "no suppressions\n"
    assert _piped(["log", "show"], env).stdout == "no decisions recorded\n"
    assert _piped(["secrets", "status"], env).stdout == "no secrets recorded\n"
    assert _piped(["dlq", "list"], env).stdout == "the dead-letter queue is empty\n"
