"""Build a test landscape the way a user does, never by writing rows.

`make_landscape` renders a governance.yaml document from its arguments and applies it with
`govern.landscape.apply_document`, the code path of `govern apply` (and `POST /api/v1/apply`). The
integration user's client secret is set with the secret service that `govern secrets put
integration_user/USER/client_secret` calls. `change_landscape` edits what `govern export` reads back and
applies the result, as a user edits their file; `put_credential_secret` is `govern secrets put CREDENTIAL`.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import yaml

from govern.config_as_code.schema import HEADER_PROTOCOLS, OAUTH2
from govern.landscape import apply_document, export_document
from govern.secrets.service import secret_service

ACTOR = "cli:tests"  # what `govern apply` records for the OS user running it


def landscape_document(*, system="erp", credential="erp-cc", protocol="oauth2_client_credentials",
                       token_url="http://127.0.0.1:9/token", client_id="erp-client", named_credential="erp-api",
                       url="http://127.0.0.1:9/api", user="order-sync", cidrs=("127.0.0.0/8",),
                       user_scopes=("orders.read", "orders.write"), permission_set="order-sync-ps",
                       ps_scopes=("orders.read",), methods=("GET",), paths=("/**",), principal="default",
                       principal_type="named", assignment_expires=None, status="active", daily_api_budget=None,
                       maintenance_windows=(), api_types=("REST",), max_token_lifetime=900,
                       client_auth="client_secret_basic", audience=None, header=None, subject=None,
                       timeout=None, user_auth="client_secret_basic", jwks=None) -> dict[str, Any]:
    """The governance.yaml mapping of one system with one credential (and principal), named credential,
    integration user and permission set granting the user the named credential."""
    contract: dict[str, Any] = {"owner": "team@example.com", "escalation": "oncall@example.com",
                                "runbook": "https://runbooks.example.com/x"}
    if daily_api_budget is not None:
        contract["daily_api_budget"] = daily_api_budget
    if maintenance_windows:
        contract["maintenance_windows"] = [dict(w) for w in maintenance_windows]
    principal_doc: dict[str, Any] = {"name": principal}
    if subject is not None:
        principal_doc["subject"] = subject
    if principal_type == "per_user":
        principal_doc["user"] = user
    credential_doc: dict[str, Any] = {"id": credential, "system": system, "protocol": protocol,
                                      "scopes": list(ps_scopes), "principal_type": principal_type,
                                      "principals": [principal_doc]}
    if protocol in OAUTH2:  # the schema refuses token endpoint settings on the other protocols
        credential_doc.update(token_url=token_url, client_id=client_id, client_auth=client_auth)
        if audience is not None:
            credential_doc["audience"] = audience
    if protocol in HEADER_PROTOCOLS:
        credential_doc["header"] = header or "X-Api-Key"
    named_doc: dict[str, Any] = {"id": named_credential, "credential": credential, "url": url,
                                 "methods": list(methods), "paths": list(paths)}
    if timeout is not None:
        named_doc["timeout"] = timeout
    assignment: Any = permission_set
    if assignment_expires is not None:
        assignment = {"permission_set": permission_set, "until": assignment_expires.isoformat()}
    return {
        "apiVersion": "govern/v1",
        "systems": [{"id": system, "scopes": sorted(set(user_scopes) | set(ps_scopes)), "contract": contract}],
        "credentials": [credential_doc],
        "named_credentials": [named_doc],
        "integration_users": [{"id": user, "owner": "team@example.com", "justification": "test", "status": status,
                               "review_date": (dt.date.today() + dt.timedelta(days=90)).isoformat(),
                               "auth": user_auth, **({"jwks": jwks} if jwks else {}),
                               "ip_ranges": list(cidrs), "scopes": list(user_scopes),
                               "permission_sets": [assignment]}],
        "permission_sets": [{"id": permission_set, "scopes": list(ps_scopes), "api_types": list(api_types),
                             "max_token_lifetime": max_token_lifetime,
                             "grants": [{"named_credential": named_credential, "principal": principal,
                                         "methods": list(methods), "paths": list(paths)}]}],
    }


def apply_landscape(services, document: dict[str, Any] | str, *, prune: bool = False):
    """Apply a governance.yaml document (mapping or text) as `govern apply` does; returns the plan."""
    text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False)
    return apply_document(services.sessions, text, "<input>", prune=prune, actor=ACTOR,
                          production=services.settings.production)


def exported(services) -> dict[str, Any]:
    """What `govern export` writes, as a mapping."""
    return yaml.safe_load(export_document(services.sessions))


def change_landscape(services, edit: Callable[[dict[str, Any]], None]):
    """Export the landscape, let `edit` change the mapping in place, and apply it (a user editing their file)."""
    document = exported(services)
    edit(document)
    return apply_landscape(services, document)


def entity(document: dict[str, Any], section: str, ext_id: str) -> dict[str, Any]:
    """The entry of `section` with id `ext_id` in a governance.yaml mapping."""
    return next(item for item in document[section] if item["id"] == ext_id)


def update_entity(services, section: str, ext_id: str, **keys: Any):
    """Set governance.yaml keys of one entity and apply (a key set to None is removed: its default)."""

    def edit(document: dict[str, Any]) -> None:
        item = entity(document, section, ext_id)
        for key, value in keys.items():
            if value is None:
                item.pop(key, None)
            else:
                item[key] = value

    return change_landscape(services, edit)


def put_user_secret(services, user: str, value: str):
    """`govern secrets put integration_user/USER/client_secret`."""
    return secret_service(services).put_for_user(user, "client_secret", value, actor=ACTOR)


def put_credential_secret(services, credential: str, field: str, value: str, *, principal: str | None = None):
    """`govern secrets put CREDENTIAL --field FIELD [--principal P]`."""
    return secret_service(services).put_for_credential(credential, field, value, principal=principal, actor=ACTOR)


def make_landscape(services, *, client_secret="s3cret-client-secret-value", **settings: Any) -> dict[str, Any]:
    """Apply `landscape_document(**settings)` and set the integration user's client secret (none when
    `client_secret` is None). Returns the ids of what it declared, and the client secret."""
    document = landscape_document(**settings)
    apply_landscape(services, document)
    user = document["integration_users"][0]["id"]
    if client_secret:
        put_user_secret(services, user, client_secret)
    credential = document["credentials"][0]
    return {"system": document["systems"][0]["id"], "credential": credential["id"],
            "named_credential": document["named_credentials"][0]["id"], "user": user,
            "client_secret": client_secret, "permission_set": document["permission_sets"][0]["id"],
            "principal": credential["principals"][0]["name"]}
