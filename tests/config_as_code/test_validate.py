"""Validation of governance.yaml: every error collected, each with file:line:col and a path."""
import textwrap

import pytest

from govern.config_as_code.specs import empty_landscape
from govern.config_as_code.validate import validate_document
from govern.errors import ValidationFailed

BASE = """\
apiVersion: govern/v1
systems:
  - id: erp
    scopes: [orders.read, orders.write]
credentials:
  - id: erp-cc
    system: erp
    protocol: oauth2_client_credentials
    token_url: https://erp.example/token
    scopes: [orders.read]
    principals: [{name: default}]
named_credentials:
  - id: erp-api
    credential: erp-cc
    url: https://erp.example/api
integration_users:
  - id: order-sync
    ip_ranges: [10.20.0.0/16]
    scopes: [orders.read]
    permission_sets: [orders]
permission_sets:
  - id: orders
    scopes: [orders.read]
    grants:
      - named_credential: erp-api
        principal: default
"""


def errors(text, current=None, prune=False):
    with pytest.raises(ValidationFailed) as info:
        validate_document(textwrap.dedent(text), "g.yaml", current, prune=prune)
    return [(e["location"], e["path"], e["message"]) for e in info.value.errors]


def test_the_base_document_is_valid_and_normalised():
    landscape = validate_document(BASE, "g.yaml")
    assert landscape["system"]["erp"]["name"] == "erp"
    assert landscape["credential"]["erp-cc"]["client_auth"] == "client_secret_basic"
    assert landscape["integration_user"]["order-sync"]["permission_sets"] == [{"permission_set": "orders", "until": None}]
    assert landscape["named_credential"]["erp-api"]["timeout"] == 10.0
    assert landscape["permission_set"]["orders"]["max_token_lifetime"] == 3600


def test_wrong_types():
    found = errors(BASE.replace("scopes: [orders.read]\n    permission_sets", "scopes: orders.read\n    permission_sets")
                   .replace("  - id: erp\n", "  - id: erp\n    contract: {rate_limit_per_minute: lots}\n"))
    assert ("g.yaml:4:16", "systems[0].contract.rate_limit_per_minute",
            "input should be a valid integer, unable to parse string as an integer") in found
    assert any(p == "integration_users[0].scopes" and "valid list" in m for _, p, m in found)


def test_unknown_reference():
    found = errors(BASE.replace("credential: erp-cc", "credential: erp-xx"))
    assert found == [("g.yaml:14:5", "named_credentials[0].credential", "unknown credential 'erp-xx'")]


def test_duplicate_ids_and_principals():
    text = BASE.replace("principals: [{name: default}]", "principals: [{name: default}, {name: default}]") + \
        "  - id: orders\n"
    found = errors(text)
    assert ("g.yaml:27:5", "permission_sets[1].id", "duplicate permission_set id 'orders' (first at permission_sets[0], "
            "g.yaml:22:5)") in found
    assert any(p == "credentials[0].principals[1].name" and "duplicate principal" in m for _, p, m in found)


def test_malformed_cidrs():
    found = errors(BASE.replace("[10.20.0.0/16]", "[10.20.0.0/16, 10.20.1.1/16, 300.1.1.0/24]"))
    assert found == [
        ("g.yaml:18:31", "integration_users[0].ip_ranges[1]", "'10.20.1.1/16' has host bits set; did you mean 10.20.0.0/16?"),
        ("g.yaml:18:45", "integration_users[0].ip_ranges[2]", "'300.1.1.0/24' is not a CIDR (expected e.g. 10.20.0.0/16)"),
    ]


def test_unknown_scopes():
    found = errors(BASE.replace("    scopes: [orders.read]\n    principals", "    scopes: [orders.admin]\n    principals")
                   .replace("    scopes: [orders.read]\n    permission_sets", "    scopes: [everything]\n    permission_sets"))
    assert ("g.yaml:10:14", "credentials[0].scopes[0]", "unknown scope 'orders.admin': system 'erp' does not declare it") in found
    assert ("g.yaml:19:14", "integration_users[0].scopes[0]", "unknown scope 'everything': no system declares it") in found


def test_secret_looking_keys_point_at_secrets_put():
    found = errors(BASE.replace("    token_url:", "    client_secret: hunter2\n    token_url:"))
    assert len(found) == 1
    location, path, message = found[0]
    assert (location, path) == ("g.yaml:9:5", "credentials[0].client_secret")
    assert "govern secrets put" in message and "hunter2" not in message


def test_private_jwk_members_are_refused():
    text = BASE.replace("    ip_ranges: [10.20.0.0/16]\n",
                        "    auth: private_key_jwt\n    jwks: {keys: [{kty: RSA, n: abc, e: AQAB, d: secret}]}\n"
                        "    ip_ranges: [10.20.0.0/16]\n")
    (found,) = errors(text)
    assert found[1] == "integration_users[0].jwks.keys[0]" and "private key members (d)" in found[2]


def test_protocol_dependent_fields():
    found = errors(BASE.replace("protocol: oauth2_client_credentials\n    token_url: https://erp.example/token",
                                "protocol: api_key_header"))
    assert found == [("g.yaml:6:5", "credentials[0].header", "required for api_key_header")]


def test_several_errors_at_once_are_all_reported_in_file_order():
    text = BASE.replace("credential: erp-cc", "credential: nope") \
        .replace("[10.20.0.0/16]", "[10.20.0/16]") \
        .replace("  - id: erp\n", "  - id: erp\n    colour: blue\n") + "  - id: orders\n"
    found = errors(text)
    assert [p for _, p, _ in found] == ["systems[0].colour", "named_credentials[0].credential",
                                        "integration_users[0].ip_ranges[0]", "permission_sets[1].id"]
    assert [int(loc.split(":")[1]) for loc, _, _ in found] == sorted(int(loc.split(":")[1]) for loc, _, _ in found)


def test_references_resolve_against_stored_entities_unless_pruning():
    current = validate_document(BASE, "g.yaml")
    partial = "apiVersion: govern/v1\nnamed_credentials:\n  - id: erp-api2\n    credential: erp-cc\n    url: https://x.example\n"
    assert "erp-api2" in validate_document(partial, "p.yaml", current)["named_credential"]
    assert errors(partial, current, prune=True) == [("g.yaml:4:5", "named_credentials[0].credential",
                                                    "unknown credential 'erp-cc'")]
    assert empty_landscape()["system"] == {}


def test_api_version_is_required():
    assert ("g.yaml:1:1", "apiVersion", "apiVersion must be 'govern/v1'") in errors(BASE.replace("govern/v1", "govern/v2"))
