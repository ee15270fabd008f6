"""Fixtures for configuration-as-code tests: the example file and a dump of the landscape tables."""
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "governance.yaml"
TABLES = ("system", "external_credential", "principal", "named_credential", "integration_user", "permission_set",
          "permission_grant", "assignment", "secret_ref", "admin_action")


@pytest.fixture
def example_text():
    return EXAMPLE.read_text()


@pytest.fixture
def dump(services):
    """Every row of the landscape tables, to prove that a failed apply changed nothing."""
    import sqlalchemy as sa

    def _dump():
        with services.engine.connect() as conn:
            return {t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY id"))] for t in TABLES}

    return _dump


@pytest.fixture
def world(settings, fake_upstream, resources):
    """govern wired as `govern serve` wires it, the landscape applied from YAML (tests/config_as_code/world.py)."""
    from tests.config_as_code.world import build_world

    built = build_world(settings, fake_upstream, resources)
    yield built
    built.services.close()
