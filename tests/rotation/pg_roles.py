"""Throw-away PostgreSQL login roles for rotator tests (random names; dropped afterwards)."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import PG_BASE_URL


def admin_url() -> str:
    return PG_BASE_URL


@pytest.fixture
def pg_roles(_pg_admin):
    """A factory: make_role(password) -> role name. Every role made is dropped at the end."""
    import psycopg
    from psycopg import sql

    made: list[str] = []

    def make_role(password: str) -> str:
        name = f"govern_rot_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        made.append(name)
        return name

    yield make_role
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
