"""The web process's gunicorn settings (govern/gunicorn_conf.py) and the command line `govern serve` builds.

The real starts check what production gets from `gunicorn -c python:govern.gunicorn_conf`: threaded workers,
no access log (govern writes its own JSON line per request), options on the command line still winning, and
a bad environment value stopping startup with one line instead of a traceback.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import GUNICORN, ROOT, Gunicorn, free_port
WEB_ENV = ("GOVERN_WEB_WORKERS", "GOVERN_WEB_THREADS", "GOVERN_WEB_BIND")


def _fresh_conf():
    sys.modules.pop("govern.gunicorn_conf", None)
    return importlib.import_module("govern.gunicorn_conf")


@pytest.fixture
def web_env(monkeypatch):
    for name in WEB_ENV:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    sys.modules.pop("govern.gunicorn_conf", None)  # no later import sees this test's environment


def test_defaults(web_env):
    conf = _fresh_conf()
    assert conf.worker_class == "gthread"
    # 64 threads: more than twice the default per-system bulkhead (32), so one slow system cannot hold them all
    assert (conf.workers, conf.threads, conf.bind) == (2, 64, "127.0.0.1:8000")
    assert conf.accesslog is None
    assert conf.keepalive > 60  # outlives the usual load-balancer idle timeout


def test_environment_sets_workers_threads_and_bind(web_env):
    web_env.setenv("GOVERN_WEB_WORKERS", "3")
    web_env.setenv("GOVERN_WEB_THREADS", " 16 ")
    web_env.setenv("GOVERN_WEB_BIND", "0.0.0.0:9000")
    conf = _fresh_conf()
    assert (conf.workers, conf.threads, conf.bind) == (3, 16, "0.0.0.0:9000")


@pytest.mark.parametrize("name", ["GOVERN_WEB_WORKERS", "GOVERN_WEB_THREADS"])
@pytest.mark.parametrize("raw", ["0", "-2", "four", "2.5"])
def test_a_bad_value_stops_startup_naming_the_variable(web_env, name, raw):
    web_env.setenv(name, raw)
    with pytest.raises(SystemExit) as exc:
        _fresh_conf()
    assert name in str(exc.value.code)
    assert "positive integer" in str(exc.value.code)


def test_serve_argv_uses_the_config_and_no_access_log():
    from govern.cli.instance import gunicorn_argv

    argv = gunicorn_argv("0.0.0.0", 8080)
    assert argv[:3] == [sys.executable, "-m", "gunicorn"]
    assert argv[3:] == ["-c", "python:govern.gunicorn_conf", "--bind", "0.0.0.0:8080", "govern.wsgi:app()"]
    full = gunicorn_argv("127.0.0.1", 8000, workers=4, threads=12)
    assert full[3:] == ["-c", "python:govern.gunicorn_conf", "--bind", "127.0.0.1:8000", "--workers", "4",
                        "--threads", "12", "govern.wsgi:app()"]
    assert not any(a.startswith("--access-log") for a in full)


@pytest.mark.parametrize("args, expected", [
    (["--workers", "3"], ["--workers", "3"]),
    (["--workers", "2", "--threads", "4"], ["--workers", "2", "--threads", "4"]),
])
def test_serve_execs_gunicorn_with_the_options_given(runner, monkeypatch, args, expected):
    class Execd(Exception):
        """os.execvp does not return."""

    def execvp(file, argv):
        raise Execd(file, argv)

    monkeypatch.setattr(os, "execvp", execvp)
    with pytest.raises(Execd) as exc:
        runner.invoke(["serve", "--port", "8123", *args])
    file, argv = exc.value.args
    assert file == argv[0] == sys.executable
    assert argv[3:] == ["-c", "python:govern.gunicorn_conf", "--bind", "127.0.0.1:8123", *expected,
                        "govern.wsgi:app()"]


# --- real starts --------------------------------------------------------------------------------------

def _env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in WEB_ENV}
    env.update({"GOVERN_HOME": str(settings.home), "GOVERN_DATABASE_URL": settings.database_url,
                "GOVERN_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    env.pop("GOVERN_REDIS_URL", None)
    return env


def _serve_and_get_healthz(settings, log_path: Path, extra: list[str]) -> str:
    """Start gunicorn with the config, wait for /healthz, stop it; its output."""
    server = Gunicorn.start(_env(settings), log_path, ["-c", "python:govern.gunicorn_conf", "--workers", "1",
                                                       "--log-level", "info", *extra])
    server.stop()  # stopped before reading: every line it would write is written by now
    return log_path.read_text()


@pytest.mark.slow
def test_gunicorn_runs_threaded_workers_without_an_access_log(settings, tmp_path):
    output = _serve_and_get_healthz(settings, tmp_path / "gunicorn.log", [])
    assert "Using worker: gthread" in output, output
    assert "Control socket" not in output, output  # disabled: not writable on a read-only root filesystem
    assert '"GET /healthz' not in output, output


@pytest.mark.slow
def test_command_line_options_override_the_config(settings, tmp_path):
    output = _serve_and_get_healthz(settings, tmp_path / "gunicorn.log", ["--access-logfile", "-", "-k", "sync", "--threads", "1"])
    assert "Using worker: sync" in output, output
    assert '"GET /healthz' in output, output  # so the test above would see an access line if there were one


def test_gunicorn_refuses_a_bad_value_in_one_line(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in WEB_ENV}, "GOVERN_WEB_THREADS": "many",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([GUNICORN, "-c", "python:govern.gunicorn_conf", "--bind", f"127.0.0.1:{free_port()}",
                           "govern.wsgi:app()"], cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["error: GOVERN_WEB_THREADS must be a positive integer, got 'many'"]
    assert "Traceback" not in proc.stderr + proc.stdout
