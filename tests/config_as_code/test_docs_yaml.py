"""The governance.yaml written in the docs is governance.yaml the schema accepts (issue #15): docs/proxy.md
named keys (`retry.max_attempts`, `failure_threshold`, ...) that apply refused.

Every ```yaml block of the three documents is loaded; a fragment (sections without `apiVersion`) is read as
a document's sections. Every entity is checked against its section's model: an unknown key, or a value the
schema refuses, fails. Missing required fields are allowed (fragments show only what they are about), and so
are cross-entity references (they resolve against other files)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from govern.config_as_code import schema as s

DOCS = Path(__file__).resolve().parents[2] / "docs"
FILES = ("proxy.md", "governance-schema.md", "upstream-tokens.md")
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)


def blocks():
    for name in FILES:
        for index, match in enumerate(BLOCK.finditer((DOCS / name).read_text())):
            yield pytest.param(match.group(1), id=f"{name}#{index}")


def test_each_document_has_yaml_to_check():
    assert {name for name in FILES if BLOCK.search((DOCS / name).read_text())} == set(FILES)


@pytest.mark.parametrize("text", list(blocks()))
def test_every_key_in_the_docs_is_accepted_by_the_schema(text):
    """Read the way `govern apply` reads a file (govern.config_as_code.validate.parse: the secret-key scan, the
    bare-id assignments, each entity's model), a fragment given the header it leaves out."""
    from govern.config_as_code.validate import parse

    if not re.search(r"^apiVersion:", text, re.M):
        text = f"apiVersion: {s.API_VERSION}\n" + text
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict) and set(doc) & set(s.SECTIONS)
    parsed = parse(text, "docs.yaml")
    # The reference block in governance-schema.md lists every key of every protocol in one entity and elides
    # the JWK (`{keys: [...]}`): rules that tie a key to a protocol or an auth method are not what this checks.
    problems = [e for e in parsed.doc.errors if "required" not in e["message"].lower()
                and not e["message"].startswith(("applies only to", "not a JWK", "only per_user principals"))]
    assert not problems, [f"{e['location']} {e.get('path', '')}: {e['message']}" for e in problems]


def test_the_proxy_table_names_schema_keys():
    """docs/proxy.md's table names `retry.*` and `circuit_breaker.*` keys: each must be a schema field."""
    text = (DOCS / "proxy.md").read_text()
    named = re.findall(r"`(retry|circuit_breaker)\.(\w+)`", text)
    assert named
    fields = {"retry": s.RetryPolicy.model_fields, "circuit_breaker": s.BreakerPolicy.model_fields}
    assert [f"{group}.{key}" for group, key in named if key not in fields[group]] == []
