"""Shared fixtures.

Databases: every test that asks for `database_url` gets a fresh, migrated database. The backend is
SQLite unless GOVERN_TEST_DATABASE=postgres; each test then gets its own PostgreSQL database, copied
from a migrated template, so test runs never collide. `postgres_url` always gives a PostgreSQL one
(for multi-process tests).

Real services: when GOVERN_TEST_REQUIRE_SERVICES=1 (set by .ci/run), a missing PostgreSQL, Redis,
OpenBao binary or Chromium fails the test instead of skipping it.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

PG_BASE_URL = os.environ.get("GOVERN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Under pytest-xdist each worker gets its own Redis database (gw0 -> 1, gw1 -> 2, ...), so leases, rate-limit
# counters and caches of tests running at the same time never meet; PostgreSQL databases are already per test.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_REDIS_DB = int(_XDIST_WORKER[2:]) + 1 if _XDIST_WORKER.startswith("gw") else 0
REDIS_URL = os.environ.get("GOVERN_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{_REDIS_DB}")
REQUIRE_SERVICES = os.environ.get("GOVERN_TEST_REQUIRE_SERVICES") == "1"
BACKEND = os.environ.get("GOVERN_TEST_DATABASE", "sqlite")

pytest_plugins = ["tests.fixtures_openbao", "tests.fixtures_upstream"]


def _reuse_url_builders() -> None:
    """Speed, in the tests' own process only. Nearly every test builds govern's Flask app, and werkzeug compiles
    Python code for each of its ~200 URL rules every time (Rule._compile_builder: 0.17 s of the app's 0.24 s).
    The code depends only on the rule's parts, its defaults and whether unknown arguments are appended, and it
    reaches the rule's converters through the rule it is bound to: the same function serves every app. The
    servers the tests start (gunicorn, the CLI as a subprocess) compile as in production."""
    from werkzeug.routing.rules import Rule

    compile_builder = Rule._compile_builder
    built: dict[tuple, Any] = {}

    def reused(self, append_unknown: bool = True):
        defaults = self.defaults or {}
        try:
            key = (tuple(self._trace), append_unknown,
                   tuple((name, self._converters[name].to_url(value) if name in self._converters else None)
                         for name, value in defaults.items()))
            hash(key)
        except Exception:  # noqa: BLE001 - an unusual rule is compiled as werkzeug does
            return compile_builder(self, append_unknown)
        if key not in built:
            built[key] = compile_builder(self, append_unknown)
        return built[key]

    Rule._compile_builder = reused  # type: ignore[method-assign]


_reuse_url_builders()


def need(service: str, reason: str):
    """Skip, or fail when CI requires every real service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{service} is required in CI but unavailable: {reason}")
    pytest.skip(f"{service} unavailable: {reason}")


ROOT = Path(__file__).resolve().parents[1]
# The files that took longest in CI's two passes (--durations, 2026-12-07), longest first: they are handed out
# first. Only the order changes; a file missing from the list just takes its place among the others.
LONGEST_FILES = ("tests/admin/test_console_pages.py", "tests/security/test_hostile_input.py",
                 "tests/config_as_code/test_apply_to_runtime.py", "tests/test_cli_json.py",
                 "tests/security/test_schemathesis.py", "tests/test_cli_progress.py",
                 "tests/admin/test_console_connect.py", "tests/rotation/test_crash_resume.py",
                 "tests/ops/test_server_raw_path.py", "tests/security/test_jti_replay.py",
                 "tests/e2e/test_one_snapshot.py", "tests/security/test_bruteforce.py",
                 "tests/security/test_host_and_issuer.py", "tests/security/test_guardrail_prefix.py",
                 "tests/test_doctor.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("one_backend") is not None:
            continue  # what it proves does not depend on the backend: the SQLite pass runs it, PostgreSQL's not
        if {"database_url", "app", "client", "runner", "services"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)
    # Files holding slow tests first (a stable sort keeps the order within each group): pytest-xdist, with
    # --dist loadfile, hands files to its workers in this order, so the long ones start early and the quick ones
    # fill in at the end, instead of one worker finishing a long file while the other has nothing left.
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    first = {ROOT / name: rank for rank, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: (first.get(item.path, len(first)), item.path not in slow))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that fails while govern runs under real gunicorn shows the tail of each server's log (where a 500's
    traceback goes): a CI failure is then read from CI's own output, not guessed at."""
    if call.excinfo is not None and call.when == "call":
        from tests.procs import RUNNING

        for server in list(RUNNING):
            item.add_report_section("call", f"gunicorn log {server.log_path}", server.log_tail(6000))
    yield


def pytest_configure(config):
    config.addinivalue_line("markers", "db: uses the database backend chosen by GOVERN_TEST_DATABASE")
    config.addinivalue_line("markers", "one_backend: uses the database, but what it asserts does not depend on the "
                                       "backend (never a store, migration, query or concurrency test): not marked "
                                       "`db`, so CI's PostgreSQL pass (-m 'db or postgres') leaves it out")


# --- PostgreSQL ------------------------------------------------------------------------------------

def _pg_admin_engine():
    from govern.store.db import make_engine

    return make_engine(PG_BASE_URL, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)


def _pg_url(name: str) -> str:
    base, _, _ = PG_BASE_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def _pg_admin():
    import sqlalchemy as sa

    try:
        engine = _pg_admin_engine()
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        need("PostgreSQL", f"{PG_BASE_URL}: {type(exc).__name__}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def _pg_template(_pg_admin):
    import sqlalchemy as sa

    from govern.store.db import make_engine, upgrade

    name = f"govern_tmpl_{uuid.uuid4().hex[:10]}"
    with _pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(_pg_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    with _pg_admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _pg_copy(admin, template: str) -> str:
    import sqlalchemy as sa

    name = f"govern_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    return name


def _pg_drop(admin, name: str) -> None:
    import sqlalchemy as sa

    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class _PgDatabases:
    """Fresh copies of the template, made and dropped by a thread of their own while tests run.

    A CREATE DATABASE from the template and its DROP cost about 0.45 s here, most of it waiting on the disk;
    in line, they were a quarter of CI's PostgreSQL pass. Each test still gets a database nobody has used: the
    thread keeps `ahead` copies ready, and drops a test's database after the test, while the next one runs."""

    def __init__(self, template: str, ahead: int = 2):
        import queue
        import threading

        self._template = template
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._jobs: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._made: set[str] = set()
        self._admin = _pg_admin_engine()  # its own connection: the fixtures' admin engine holds one only
        for _ in range(ahead):
            self._jobs.put(("create", None))
        self._thread = threading.Thread(target=self._work, name="pg-test-databases", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job, name = self._jobs.get()
            if job == "stop":
                return
            try:
                if job == "create":
                    made = _pg_copy(self._admin, self._template)
                    self._made.add(made)
                    self._ready.put(made)
                elif name is not None:
                    _pg_drop(self._admin, name)
                    self._made.discard(name)
            except BaseException as exc:  # noqa: BLE001 - a test waiting for a database fails with it
                if job == "create":
                    self._ready.put(exc)
                # a database that could not be dropped stays in _made: close() drops it, or fails saying why

    def take(self) -> str:
        self._jobs.put(("create", None))  # the next test's, made while this one runs
        got = self._ready.get(timeout=120)
        if isinstance(got, BaseException):
            raise got
        return got

    def give_back(self, name: str) -> None:
        self._jobs.put(("drop", name))

    def close(self) -> None:
        self._jobs.put(("stop", None))
        self._thread.join(timeout=120)
        for name in list(self._made):
            _pg_drop(self._admin, name)
        self._admin.dispose()


@pytest.fixture(scope="session")
def _pg_databases(_pg_admin, _pg_template):
    databases = _PgDatabases(_pg_template)
    yield databases
    databases.close()


@pytest.fixture
def postgres_url(_pg_databases):
    name = _pg_databases.take()
    yield _pg_url(name)
    _pg_databases.give_back(name)


@pytest.fixture
def empty_postgres_url(_pg_admin):
    """A PostgreSQL database with no schema at all (for migration tests)."""
    import sqlalchemy as sa

    name = f"govern_e_{uuid.uuid4().hex[:12]}"
    with _pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield _pg_url(name)
    _pg_drop(_pg_admin, name)


# --- SQLite ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    from govern.store.db import make_engine, upgrade

    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture
def database_url(request, tmp_path):
    """A fresh, migrated database on the backend chosen by GOVERN_TEST_DATABASE."""
    if BACKEND == "postgres":
        yield request.getfixturevalue("postgres_url")
        return
    template = request.getfixturevalue("_sqlite_template")
    target = tmp_path / "govern.db"
    shutil.copyfile(template, target)
    yield f"sqlite:///{target}"


# --- A CLI instance -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def cli_instance_template(tmp_path_factory) -> Path:
    """`govern init` + `govern apply -f examples/governance.yaml` as subprocesses, once per session: tests copy it
    with tests.cli_instance.copy_instance (never change it)."""
    from tests.cli_instance import make_instance

    return make_instance(tmp_path_factory.mktemp("cli-instance"))


# --- Redis -----------------------------------------------------------------------------------------

@pytest.fixture
def redis_url():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001
        need("Redis", f"{REDIS_URL}: {type(exc).__name__}")
    return REDIS_URL


@pytest.fixture
def redis_prefix():
    return f"govern-test:{uuid.uuid4().hex[:10]}:"


# --- The app ---------------------------------------------------------------------------------------

@pytest.fixture
def settings(tmp_path, database_url):
    from govern.config import load_settings

    home = tmp_path / "instance"
    home.mkdir()
    return load_settings({}, home=home, database_url=database_url, log_level="DEBUG")


@pytest.fixture
def services(settings):
    from govern.bootstrap import build_services

    svc = build_services(settings)
    yield svc
    svc.close()


@pytest.fixture
def app(services):
    from govern.app import create_app

    return create_app({"TESTING": True}, services=services)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(settings, monkeypatch):
    """Invoke the `govern` CLI in-process against the test instance."""
    from click.testing import CliRunner

    from govern.cli import _register, cli

    monkeypatch.setenv("GOVERN_HOME", str(settings.home))
    monkeypatch.setenv("GOVERN_DATABASE_URL", settings.database_url)
    _register()

    class _Runner:
        def invoke(self, args, input=None, **kw):
            return CliRunner().invoke(cli, args, input=input, catch_exceptions=False, **kw)

    return _Runner()


@pytest.fixture
def admin_token(services):
    from govern.store.admins import create_admin, issue_token

    create_admin(services.sessions, "root-admin", "correct horse battery staple", "admin")
    return issue_token(services.sessions, "root-admin")


@pytest.fixture
def resources():
    """A local resource server (tests/fakes/resource_server.py): the upstream API behind named credentials."""
    from tests.fakes.resource_server import ResourceServer

    server = ResourceServer().start()
    yield server
    server.stop()
