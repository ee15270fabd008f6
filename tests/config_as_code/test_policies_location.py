"""The guardrail policies are found from the instance folder or the package, never the working directory,
and /readyz says so when they cannot be loaded (issue #15). Before, `policies/` was looked up relative to
the working directory: started from another folder, /readyz said ready while every token and proxy call
answered 500 configuration_error."""
from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from govern.policy.guardrails import PACKAGED_POLICIES
from tests.config_as_code.world import build_world

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    folder = tmp_path / "somewhere-else"
    folder.mkdir()
    monkeypatch.chdir(folder)  # a folder with no policies/ in it
    return folder


def test_from_another_folder_govern_is_ready_and_decides_with_the_packaged_policies(settings, fake_upstream,
                                                                                    resources, elsewhere):
    world = build_world(settings, fake_upstream, resources)
    try:
        r = world.client.get("/readyz")
        assert r.status_code == 200 and r.get_json()["checks"]["policies"] == "ok"
        assert world.proxy("stock-api", "items/1").status_code == 200  # was 500 configuration_error
        assert world.upstream_token().status_code == 200
    finally:
        world.services.close()


def test_the_instance_folders_own_policies_win(settings, fake_upstream, resources, elsewhere):
    own = Path(settings.home) / "policies"
    own.mkdir()
    (own / "govern.cedarschema").write_text((PACKAGED_POLICIES / "govern.cedarschema").read_text())
    (own / "000_permit.cedar").write_text((PACKAGED_POLICIES / "000_permission_sets.cedar").read_text())
    (own / "900_no_stock.cedar").write_text(
        '@id("no-stock-api")\nforbid (principal, action, resource) when { context.path like "/items/*" };\n')
    world = build_world(settings, fake_upstream, resources)
    try:
        r = world.proxy("stock-api", "items/1")
        assert r.status_code == 403 and r.get_json()["rule"] == "forbid:no-stock-api", r.get_data(as_text=True)
    finally:
        world.services.close()


def test_readyz_is_503_while_the_policies_cannot_be_loaded(settings, fake_upstream, resources, elsewhere):
    own = Path(settings.home) / "policies"
    own.mkdir()
    (own / "broken.cedar").write_text("permit (principal, action, resource")  # and no schema
    world = build_world(settings, fake_upstream, resources)
    try:
        r = world.client.get("/readyz")
        assert r.status_code == 503 and r.get_json()["checks"]["policies"] == "unavailable"
    finally:
        world.services.close()


def test_the_package_data_ships_the_policies_and_their_schema():
    """One copy, inside the package: pyproject's package-data must match every file in it."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["govern"]
    files = sorted(p for p in PACKAGED_POLICIES.iterdir() if p.is_file())
    assert any(p.suffix == ".cedar" for p in files) and (PACKAGED_POLICIES / "govern.cedarschema") in files
    for path in files:
        relative = path.relative_to(ROOT / "govern").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
    assert not (ROOT / "policies").exists()
