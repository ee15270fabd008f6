"""The stored landscape version: one row whose counter moves, in the same transaction, with every write to a
table the broker, the proxy or the upstream token source reads (issue #15, "One snapshot").

Each process keeps one in-memory snapshot of the landscape (govern.broker.landscape) and compares its version
with this row's, a primary-key read, to know when to reload it. So the counter must move with every such write,
whoever makes it: `govern apply`, the API, the console, `govern secrets put`, a rotation run. Rather than ask
each writer to remember, the session does it: `install()` adds listeners to every SQLAlchemy Session that bump
the row when a flush (ORM objects) or a DML statement run through the session (the apply's bulk statements)
touches one of LANDSCAPE_TABLES. The bump is bookkeeping inside the writer's own transaction (it commits or rolls
back with it), not a side effect outside it.

Writes that change nothing the snapshot reads opt out: the token endpoint's `last_used_at` touch runs on every
token request and would otherwise rebuild every process's snapshot each time. A DML statement opts out with
the execution option `landscape_unchanged=True`; an ORM change opts out when only BOOKKEEPING columns changed.
Writes made outside a Session (a bare `engine.begin()`) are not seen: none touches these tables.
"""
from __future__ import annotations

import itertools
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction

# What govern.broker.landscape loads, plus where secret versions are recorded (a put or a rotation must reach
# the proxy's and the upstream token source's secret memos within the same bound). Every put records its
# version in secret_ref/secret_version after the store holds the value, whichever the store; the local
# store's own rows (local_secret) are not listed: govern's signing and decision keys live there too.
LANDSCAPE_TABLES = frozenset({
    "system", "external_credential", "principal", "named_credential", "integration_user", "permission_set",
    "permission_grant", "assignment", "secret_ref", "secret_version",
})
# Columns no snapshot reads, written on hot paths.
BOOKKEEPING: dict[str, frozenset[str]] = {"integration_user": frozenset({"last_used_at"})}
UNCHANGED_OPTION = "landscape_unchanged"
ROW_ID = 1
_BUMPED = "govern.landscape_version.bumped"  # session.info key: the transaction that already bumped


# The table (its model: govern.store.tables.LandscapeVersion) as a Core clause. Every session factory installs
# this module's listeners, so it imports no table class: SQLModel and govern's tables cost more than a command
# that only reads the store may take (bench/cli.py, tests/test_cli_startup.py).
_TABLE = sa.table("landscape_version", sa.column("id", sa.Integer), sa.column("version", sa.BigInteger))
_READ = sa.select(_TABLE.c.version).where(_TABLE.c.id == ROW_ID)
_BUMP = sa.update(_TABLE).where(_TABLE.c.id == ROW_ID).values(version=_TABLE.c.version + 1)
# Commits in this process that bumped the version: a snapshot in this process re-checks at once when it moves,
# so a process reads its own writes without waiting for its check interval. A hint only; the row is the truth.
_local_commits = itertools.count(1)
_last_local_commit = 0


def read_version(connection: sa.Connection) -> int:
    """The stored version (0 when the row is missing: a schema made without the migrations)."""
    value = connection.execute(_READ).scalar_one_or_none()
    return int(value or 0)


def local_commits() -> int:
    """How many landscape-changing commits this process has made (see _local_commits)."""
    return _last_local_commit


def install() -> None:
    """Listen on every Session (govern's factories, the console's scoped session, the rotation runner's pinned
    one). Idempotent; called by govern.store.db.make_session_factory, never at import time."""
    for name, listener in (("before_flush", _before_flush), ("do_orm_execute", _on_execute),
                           ("after_commit", _after_commit), ("after_transaction_end", _after_transaction_end)):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def bump(session: Session) -> None:
    """Move the counter, once per transaction. On PostgreSQL this takes the row's lock until the transaction
    ends: landscape writers queue behind each other, readers never wait."""
    transaction = session.get_transaction()
    if transaction is not None and session.info.get(_BUMPED) is transaction:
        return
    connection = session.connection()
    if connection.execute(_BUMP).rowcount == 0:
        connection.execute(sa.insert(_TABLE).values(id=ROW_ID, version=1))
    session.info[_BUMPED] = session.get_transaction()


def _changes_landscape(session: Session, obj: Any, *, dirty: bool) -> bool:
    table = getattr(obj, "__tablename__", None)
    if table not in LANDSCAPE_TABLES:
        return False
    if not dirty:
        return True
    ignored = BOOKKEEPING.get(table, frozenset())
    state = sa.inspect(obj)
    return any(attr.history.has_changes() for attr in state.attrs if attr.key not in ignored)


def _before_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    if (any(_changes_landscape(session, o, dirty=False) for o in itertools.chain(session.new, session.deleted))
            or any(_changes_landscape(session, o, dirty=True) for o in session.dirty)):
        bump(session)


def _on_execute(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    if state.execution_options.get(UNCHANGED_OPTION):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in LANDSCAPE_TABLES:
        bump(state.session)


def _after_commit(session: Session) -> None:
    global _last_local_commit
    if session.info.pop(_BUMPED, None) is not None:
        _last_local_commit = next(_local_commits)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if session.info.get(_BUMPED) is transaction:  # rolled back: nothing was bumped after all
        session.info.pop(_BUMPED, None)
