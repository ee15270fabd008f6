"""Which database failures answer 503 database_unavailable (govern.store.db.unavailable) and which stay a bug
(500). The whole outage, over HTTP against real gunicorn and PostgreSQL: tests/ops/test_database_down.py."""
from __future__ import annotations

import sqlite3

import sqlalchemy as sa

from govern.errors import DatabaseUnavailable
from govern.store.db import unavailable


def _wrapped(cls, orig):
    return cls("SELECT secret_column FROM t WHERE x = ?", {"x": "a-parameter-value"}, orig)


def test_the_driver_saying_not_now_is_503_with_its_reason_for_the_log_only():
    error = unavailable(_wrapped(sa.exc.OperationalError, sqlite3.OperationalError("database is locked")))
    assert isinstance(error, DatabaseUnavailable) and error.status == 503
    assert error.headers["Retry-After"] == "5"
    assert error.reason == "OperationalError: database is locked"
    body = str(error.to_problem())
    assert "locked" not in body and "a-parameter-value" not in body and "SELECT" not in body


def test_every_connection_of_the_pool_busy_is_503():
    assert isinstance(unavailable(sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")),
                      DatabaseUnavailable)


def test_a_dropped_connection_is_503_and_a_broken_statement_or_constraint_stays_a_bug():
    dropped = _wrapped(sa.exc.InterfaceError, sqlite3.InterfaceError("connection already closed"))
    dropped.connection_invalidated = True
    assert isinstance(unavailable(dropped), DatabaseUnavailable)
    assert unavailable(_wrapped(sa.exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed"))) is None
    assert unavailable(_wrapped(sa.exc.ProgrammingError, sqlite3.ProgrammingError("no such column"))) is None
    assert unavailable(ValueError("not the database")) is None


def test_sqlite_saying_no_such_table_is_a_bug_not_an_outage():
    assert unavailable(_wrapped(sa.exc.OperationalError, sqlite3.OperationalError("no such table: decisions"))) is None
    assert isinstance(unavailable(_wrapped(sa.exc.OperationalError, sqlite3.OperationalError("disk I/O error"))),
                      DatabaseUnavailable)
