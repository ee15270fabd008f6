"""The engine, sessions and migrations. Created by the composition root, never at import time."""
from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import CursorResult, Result, make_url
from sqlalchemy.orm import Session, sessionmaker

from govern.errors import ConfigurationError, DatabaseUnavailable

if TYPE_CHECKING:  # sqlmodel is imported when sessions are made: govern --help loads this module, not sqlmodel
    from sqlmodel import SQLModel


# SQLite's OperationalError texts that mean "not now" (the others, "no such table", "no such column", are bugs).
_SQLITE_NOT_NOW = ("database is locked", "database table is locked", "disk I/O error", "unable to open database",
                   "database or disk is full", "attempt to write a readonly database")


def unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The database's failure to serve as govern's error (503 database_unavailable), None for anything else.

    OperationalError is the driver's word for "not now": the server is down or out of connections ("sorry, too
    many clients already"), a connection dropped, SQLite's lock outlasted the busy timeout, a deadlock or a
    serialization failure. The pool's TimeoutError: every connection of this process stayed busy. Any other
    database error (a constraint, a bad statement) is a bug and stays a 500. The driver's text is not shown to
    the client: `reason` keeps its first line for the server log (no statement and no parameters: those are in
    SQLAlchemy's wrapper only)."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.TimeoutError) or (
            isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated):
        orig = getattr(exc, "orig", None)
        if isinstance(orig, sqlite3.OperationalError) and not str(orig).startswith(_SQLITE_NOT_NOW):
            return None  # SQLite says OperationalError for "no such table" too: a bug, not an outage
        reason = str(orig if orig is not None else exc).strip().splitlines()
        return DatabaseUnavailable("govern's database cannot serve this request now; retry shortly",
                                   reason=f"{type(orig or exc).__name__}: {reason[0][:300] if reason else ''}")
    return None


def make_engine(url: str, **kw) -> sa.Engine:
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every SQLite test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    kw.setdefault("pool_pre_ping", True)
    kw.setdefault("pool_size", 5)
    kw.setdefault("max_overflow", 10)
    return sa.create_engine(url, **kw)


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split("sqlite:///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def describe_database(database_url: str) -> str:
    """The database URL without its password."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown by its scheme only
        return database_url.split(":", 1)[0] + ":..."


class _SessionFactory(sessionmaker[Session]):
    """A sessionmaker of SQLModel sessions (they add `exec`) that imports SQLModel, and pydantic with it, when it
    makes its first session rather than when it is built: a command that reads with Core through a connection
    (`govern secrets status`) then never loads them (bench/cli.py; tests/test_cli_startup.py)."""

    _sqlmodel = False

    def __call__(self, **local_kw: Any) -> Session:
        if not self._sqlmodel:
            from sqlmodel import Session as SQLModelSession

            self.class_ = type(SQLModelSession.__name__, (SQLModelSession,), {})
            self._sqlmodel = True
        return super().__call__(**local_kw)


def make_session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    from govern.store import landscape_version

    landscape_version.install()  # every landscape write moves the stored version in its own transaction
    return _SessionFactory(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class _Row(Protocol):
    id: int | None


def row_id(row: _Row) -> int:
    """The primary key of a row read from the database (or flushed to it). The tables type `id` as optional
    because a new object has none until it is flushed."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id: it was never flushed")
    return row.id


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Table behind a table model, for Core statements. (SQLModel sets `__table__` on each table model
    but does not declare it, so the type checker cannot see it.)"""
    table = sa.inspect(model).local_table
    if not isinstance(table, sa.Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


def rows_matched(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched. Session.execute is typed as returning a plain Result,
    but a DML statement's result is a CursorResult, which has the count."""
    return cast("CursorResult[Any]", result).rowcount


def migrations_dir() -> Path:
    candidates = [
        os.environ.get("GOVERN_MIGRATIONS_DIR"),
        str(Path(__file__).resolve().parents[2] / "migrations"),
        str(Path.cwd() / "migrations"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "env.py").exists():
            return Path(candidate)
    raise ConfigurationError("cannot find the migrations folder; set GOVERN_MIGRATIONS_DIR")


def alembic_config(engine: sa.Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: sa.Engine, revision: str = "heads") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_revisions(engine: sa.Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def head_revisions(engine: sa.Engine) -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())


# The two below answer what current_revisions and head_revisions answer, without importing Alembic or the
# migration scripts: every CLI command checks the schema first, and those imports cost about 0.2 s of a
# command that reads one table (bench/cli.py). tests/test_cli_startup.py compares them with Alembic's answers.

def stamped_revisions(engine: sa.Engine) -> set[str]:
    """The revisions stamped in Alembic's version table (none when the table does not exist)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return set()
        return {row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}


def script_heads() -> set[str] | None:
    """The head revisions of the migration scripts, read from each script's `revision` and `down_revision`
    literals; None when a script does not declare them as plain literals (then ask Alembic)."""
    import ast

    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted((migrations_dir() / "versions").glob("*.py")):
        declared: dict[str, Any] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ("revision", "down_revision", "depends_on",
                                                                      "branch_labels"):
                        try:
                            declared[target.id] = ast.literal_eval(node.value) if node.value is not None else None
                        except ValueError:
                            return None
        if not isinstance(declared.get("revision"), str) or declared.get("depends_on") or declared.get("branch_labels"):
            return None
        revisions.add(declared["revision"])
        down = declared.get("down_revision")
        parents.update([down] if isinstance(down, str) else (down or ()))
    return (revisions - parents) or None
