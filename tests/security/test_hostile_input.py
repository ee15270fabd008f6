"""Attack vectors on govern's input edge (issue #14, "bounded input"): YAML bombs through `govern apply` and
`POST /api/v1/apply`, deep JSON, integers out of range or in other scripts' digits, undecodable
`Authorization: Basic`, bad Content-Length, and 405 without `Allow`. Every refusal is a 4xx problem+json
with a stable code (on the CLI: one line, exit 2); never a 500. Each group starts with a positive control."""
from __future__ import annotations

import base64

import pytest

from tests.config_as_code.test_validate import BASE
from tests.security.hostile_fixtures import CALLER_IP, apply_landscape, caller_token, issue_token  # noqa: F401

YAML = {"Content-Type": "application/yaml"}
PROBLEM = "application/problem+json"


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response, status: int, code: str):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == PROBLEM
    assert response.get_json()["code"] == code


# --- YAML: billion laughs, quadratic blow-up, recursion, depth, size ---------------------------------------

def laughs(levels: int = 9, fan: int = 9) -> str:
    """The 364-byte "billion laughs": each level lists the previous one `fan` times."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 10, fan: int = 8) -> str:
    """Exponential growth through `<<` merge keys, which PyYAML flattens by copying pairs."""
    lines = ["m0: &m0 {k: v}"]
    for i in range(1, levels):
        lines.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * fan) + "]}")
    return "\n".join(lines) + "\n"


def deep_block(depth: int) -> str:
    return "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "v\n"


YAML_BOMBS = {
    "billion-laughs": (laughs(), "document_too_complex", "nodes"),
    "wide-laughs": (laughs(levels=6, fan=40), "document_too_complex", "nodes"),
    "merge-keys": (merge_bomb(), "document_too_complex", "nodes"),
    "recursive-alias": ("apiVersion: govern/v1\nsystems: &s [*s]\n", "document_too_complex", "recursive"),
    "recursive-mapping": ("a: &a {b: *a}\n", "document_too_complex", "recursive"),
    "alias-count": ("x: &x 1\nl: [" + ",".join(["*x"] * 100_001) + "]\n", "document_too_complex", "alias"),
    "deep-flow": ("a: " + "[" * 200 + "]" * 200 + "\n", "document_too_complex", "nested"),
    "deep-block": (deep_block(100), "document_too_complex", "nested"),
    "too-large": ("# " + "x" * (16 * 1024 * 1024) + "\n", "document_too_large", "bytes"),
}


def test_control_apply_by_cli_and_api(runner, tmp_path, client, admin_token):
    path = tmp_path / "g.yaml"
    path.write_text(BASE)
    assert runner.invoke(["apply", "-f", str(path), "--dry-run"]).exit_code == 0
    response = client.post("/api/v1/apply?dry_run=true", data=BASE, headers={**YAML, **auth(admin_token)})
    assert response.status_code == 200 and response.get_json()["dry_run"] is True


def test_anchors_and_merge_keys_in_moderation_still_apply(client, admin_token):
    text = BASE.replace("    ip_ranges: [10.20.0.0/16]\n", "    ip_ranges: &office [10.20.0.0/16]\n") \
        .replace("    scopes: [orders.read]\n    permission_sets", "    scopes: *office_scopes\n    permission_sets") \
        .replace("systems:\n", "x-defaults: &office_scopes [orders.read]\nsystems:\n")
    response = client.post("/api/v1/apply?dry_run=true", data=text, headers={**YAML, **auth(admin_token)})
    # x-defaults is not a governance key: the document is refused for that, not for its aliases
    assert response.status_code == 422 and response.get_json()["code"] == "validation_failed"


@pytest.mark.parametrize("name", list(YAML_BOMBS))
def test_yaml_bomb_over_http_is_a_4xx_problem(client, admin_token, name):
    text, code, word = YAML_BOMBS[name]
    response = client.post("/api/v1/apply", data=text, headers={**YAML, **auth(admin_token)})
    status = 413 if code == "document_too_large" else 422
    if name == "too-large":  # beyond MAX_CONTENT_LENGTH too: werkzeug refuses it first, with the same status
        assert response.status_code == 413 and response.mimetype == PROBLEM
        return
    assert_problem(response, status, code)
    assert word in response.get_json()["detail"]


@pytest.mark.parametrize("name", list(YAML_BOMBS))
def test_yaml_bomb_on_the_cli_is_one_line_and_exit_2(runner, tmp_path, name):
    text, _, word = YAML_BOMBS[name]
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and word in lines[0], lines[:3]


@pytest.mark.parametrize("raw", [b"\xff\xfe apiVersion: 1\n", b"apiVersion: govern/v1\nsystems: [\xc3\x28]\n"])
def test_a_file_that_is_not_utf8_is_one_line_and_exit_2(runner, tmp_path, raw):
    path = tmp_path / "latin.yaml"
    path.write_bytes(raw)
    result = runner.invoke(["apply", "-f", str(path)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "not UTF-8" in result.output


# --- JSON nesting --------------------------------------------------------------------------------------------

def test_control_json_body_is_read(client, admin_token):
    response = client.post("/api/v1/rotations", json={"secret": "no-such-secret"}, headers=auth(admin_token))
    assert response.status_code == 404  # parsed, and the secret looked up


DEEP_JSON = {
    "arrays-100k": "[" * 100_000 + "]" * 100_000,
    "objects-100k": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "mixed-65": '{"a":[' * 33 + "1" + "]}" * 33,
    "unterminated": "[" * 5_000,
    "in-a-field": '{"secret": ' + "[" * 1_000 + "]" * 1_000 + "}",
}


@pytest.mark.parametrize("name", list(DEEP_JSON))
@pytest.mark.parametrize("route", ["/api/v1/rotations", "/api/v1/secrets/credential/x/client_secret",
                                   "/api/v1/named-credentials/erp-api/token"])
def test_deep_json_is_400_json_too_deep_on_every_route(client, admin_token, route, name):
    method = client.put if "/secrets/" in route else client.post
    response = method(route, data=DEEP_JSON[name], headers={"Content-Type": "application/json", **auth(admin_token)})
    assert_problem(response, 400, "json_too_deep")


@pytest.mark.parametrize("text", ['{"secret": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
                                  '{"secret": "x", "deep": ' + "[" * 63 + "]" * 63 + "}"])
def test_brackets_in_strings_and_64_levels_pass(client, admin_token, text):
    response = client.post("/api/v1/rotations", data=text,
                           headers={"Content-Type": "application/json", **auth(admin_token)})
    assert response.status_code in (404, 422)  # read and judged on its content, not its shape


def test_deep_json_in_a_jwt_header_is_401(client):
    header = base64.urlsafe_b64encode(b"[" * 3000).decode().rstrip("=")
    response = client.post("/api/v1/named-credentials/erp-api/token", json={},
                           headers={"Authorization": f"Bearer {header}.e30.c2ln"})
    assert_problem(response, 401, "unauthorized")


def test_deep_json_through_the_proxy_is_400(client, caller_token):
    response = client.post("/api/v1/named-credentials/erp-api/proxy/sobjects/Account", data="[" * 100_000,
                           headers={"Content-Type": "application/json", **auth(caller_token)},
                           environ_base={"REMOTE_ADDR": CALLER_IP})
    assert_problem(response, 400, "json_too_deep")


# --- integers ------------------------------------------------------------------------------------------------

def test_control_integers_in_range(client, admin_token):
    assert client.get("/api/v1/findings?limit=10&offset=0", headers=auth(admin_token)).status_code == 200
    assert client.get("/api/v1/systems?limit=500", headers=auth(admin_token)).status_code == 200
    assert_problem(client.get("/api/v1/findings/9223372036854775807", headers=auth(admin_token)), 404, "not_found")


BIG = "99999999999999999999999"
PATH_IDS = [f"/api/v1/findings/{BIG}", "/api/v1/findings/9223372036854775808", f"/api/v1/rotations/{BIG}",
            f"/api/v1/named-credentials/erp-api/queued/{BIG}"]


@pytest.mark.parametrize("path", PATH_IDS)
def test_path_ids_beyond_bigint_are_404(client, admin_token, path):
    response = client.get(path, headers=auth(admin_token))
    assert response.status_code == 404 and response.mimetype == PROBLEM


@pytest.mark.parametrize("path", ["/api/v1/findings/\u0661\u0662", "/api/v1/rotations/\u0967",
                                  "/api/v1/findings/\uff11"])
def test_path_ids_in_other_digits_are_400(client, admin_token, path):
    assert_problem(client.get(path, headers=auth(admin_token)), 400, "bad_request")


QUERY_INTS = [(route, param, value)
              for route, params in (("/api/v1/findings", ("limit", "offset")), ("/api/v1/audit/runs", ("limit", "offset")),
                                    ("/api/v1/rotations", ("limit", "offset")), ("/api/v1/systems", ("limit",)))
              for param in params
              for value in (BIG, "\u0661", "\u00b2", "-1", "+5", " 5", "5_0", "1e3", "", "0x10")]


@pytest.mark.parametrize(("route", "param", "value"), QUERY_INTS)
def test_query_integers_out_of_range_or_not_ascii_are_400(client, admin_token, route, param, value):
    if param == "offset" and value == "":
        pytest.skip("an empty offset is out of range only for limit")  # pragma: no cover
    response = client.get(route, query_string={param: value}, headers=auth(admin_token))
    assert_problem(response, 400, "invalid_parameter")
    assert response.get_json()["errors"][0]["location"] == f"query.{param}"


# --- header bytes --------------------------------------------------------------------------------------------

def test_control_basic_credentials_give_a_token(runner, tmp_path, client):
    apply_landscape(runner, tmp_path)
    assert issue_token(client).status_code == 200


BAD_BASIC = {
    "not-utf8": "Basic " + base64.b64encode(b"\xff\xfe:\xc3\x28").decode(),
    "latin1-chars": "Basic \xe9\xe9\xe9\xe9",
    "bad-base64": "Basic %%%%",
    "bad-padding": "Basic abc",
    "empty": "Basic ",
    "nul-in-secret": "Basic " + base64.b64encode(b"order-sync:\x00").decode(),
    "no-colon": "Basic " + base64.b64encode(b"order-sync").decode(),
}


@pytest.mark.parametrize("name", list(BAD_BASIC))
def test_bad_basic_credentials_on_the_token_endpoint_are_401(client, name):
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": BAD_BASIC[name]})
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("name", list(BAD_BASIC))
@pytest.mark.parametrize("route", ["/api/v1/named-credentials/erp-api/token", "/api/v1/systems",
                                   "/api/v1/named-credentials/erp-api/proxy/x"])
def test_basic_credentials_elsewhere_are_401_problems(client, route, name):
    method = client.get if route == "/api/v1/systems" else client.post
    response = method(route, headers={"Authorization": BAD_BASIC[name]})
    assert_problem(response, 401, "unauthorized")


def test_control_proxy_body_with_content_length(client, caller_token):
    response = client.post("/api/v1/named-credentials/erp-api/proxy/orders", data=b'{"n":1}',
                           headers={"Content-Type": "application/json", **auth(caller_token)},
                           environ_base={"REMOTE_ADDR": CALLER_IP})
    assert response.status_code == 502 or response.status_code == 503  # allowed; the upstream does not listen


@pytest.mark.parametrize("length", ["abc", "-1", "\u0661", "\u00b2", "1e3", "0x10", "5 5", BIG, "999999999"])
def test_bad_content_length_is_400(client, caller_token, length):
    def call(path):
        environ = {"REMOTE_ADDR": CALLER_IP, "CONTENT_LENGTH": length}
        return client.post(path, data=b"", headers={"Content-Type": "application/json", **auth(caller_token)},
                           environ_overrides=environ)

    proxied = call("/api/v1/named-credentials/erp-api/proxy/orders")
    if length == "999999999":  # a number, only too large for the named credential's limit
        assert_problem(proxied, 413, "payload_too_large")
    else:
        assert_problem(proxied, 400, "invalid_parameter")
        assert_problem(call("/api/v1/named-credentials/erp-api/token"), 400, "invalid_parameter")


# --- 405 ------------------------------------------------------------------------------------------------------

METHOD_VECTORS = [("DELETE", "/api/v1/systems"), ("PUT", "/api/v1/findings"), ("PATCH", "/api/v1/apply"),
                  ("GET", "/oauth/token"), ("POST", "/healthz"), ("DELETE", "/api/v1/openapi.json"),
                  ("TRACE", "/api/v1/named-credentials/erp-api/proxy/x"),
                  ("CONNECT", "/api/v1/named-credentials/erp-api/proxy/x"),
                  ("POST", "/api/v1/named-credentials/erp-api/queued/1")]


def test_control_allowed_method(client):
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(("method", "path"), METHOD_VECTORS)
def test_405_is_problem_json_with_allow(client, method, path):
    response = client.open(path, method=method)
    assert_problem(response, 405, "method_not_allowed")
    allow = {m.strip() for m in response.headers["Allow"].split(",")}
    assert method not in allow and allow

