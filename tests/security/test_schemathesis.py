"""Property-based tests of the whole HTTP API from its own OpenAPI document (issue #14): schemathesis generates
requests for every operation of `/api/v1/openapi.json` and calls the Flask app through WSGI, as an admin, as an
integration user and anonymously. No answer may be a server error, and every status returned must be one the
document lists for that operation.

Bounded for CI (two shared cores): a few examples per operation, derandomized so that a failure reproduces.
The landscape is built as a user builds it (`govern apply`, `govern secrets put`, `POST /oauth/token`).
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, status_code_conformance

from tests.security.hostile_fixtures import apply_landscape, issue_token

MAX_EXAMPLES = 10
CHECKS = [not_a_server_error, status_code_conformance]
# Path parameters that name what the landscape holds, so that some cases get past "not found".
KNOWN = {"name": "erp-api", "credential": "erp-cc", "user": "order-sync", "system": "erp", "ext_id": "erp",
         "principal": "default"}


def fuzz(app, headers: dict[str, str]) -> list[str]:
    """Every operation, MAX_EXAMPLES generated cases each; returns the failures, one line per operation."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        known = {p: v for p, v in KNOWN.items() if "{" + p + "}" in operation.path}
        # generated data that fits the document, data that does not (negative), and requests on known names
        cases = (operation.as_strategy() | operation.as_strategy(GenerationMode.NEGATIVE)
                 | operation.as_strategy(path_parameters=known))

        @given(case=cases)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), print_blob=False)
        def call(case):
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            call()
        except Exception as exc:  # noqa: BLE001 - a failure report, collected for every operation
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:600]}")
    assert operations >= 40  # the document was read whole: a broken load cannot pass as "no failures"
    return failures


@pytest.fixture
def landscape(runner, tmp_path, client):
    """A landscape whose integration user calls from the test client's address (127.0.0.1)."""
    apply_landscape(runner, tmp_path, ranges="127.0.0.0/8")


def test_control_the_document_is_served_and_parsed(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.get_json()["openapi"].startswith("3.1")


def test_as_an_admin(app, landscape, admin_token):
    assert fuzz(app, {"Authorization": f"Bearer {admin_token}"}) == []


def test_as_an_integration_user(app, client, landscape):
    token = issue_token(client, remote="127.0.0.1")
    assert token.status_code == 200, token.get_json()
    assert fuzz(app, {"Authorization": f"Bearer {token.get_json()['access_token']}"}) == []


def test_anonymously(app, landscape):
    assert fuzz(app, {}) == []
