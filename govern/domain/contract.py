"""Integration contracts (seed practice 18): what both teams agree on, rendered as JSON and Markdown.

The contract is built from plain data (the system row, its credentials and named credentials), so it
can be tested without a database. It never contains secret values: only how to authenticate.
"""
from __future__ import annotations

from typing import Any

CONTRACT_VERSION = "govern.contract/v1"


def build_contract(system: dict[str, Any], credentials: list[dict[str, Any]],
                   named_credentials: list[dict[str, Any]]) -> dict[str, Any]:
    contract = system.get("contract") or {}
    return {
        "contract_version": CONTRACT_VERSION,
        "system": {"id": system["external_id"], "name": system.get("name") or system["external_id"],
                   "kind": system.get("kind"), "description": system.get("description") or ""},
        "endpoints": [
            {"named_credential": nc["external_id"], "url": nc["url"], "api_type": nc.get("api_type"),
             "api_version": nc.get("api_version"), "methods": nc.get("allowed_methods") or ["*"],
             "paths": nc.get("allowed_paths") or ["/**"], "timeout_seconds": nc.get("timeout_seconds"),
             "during_maintenance": nc.get("during_maintenance")}
            for nc in sorted(named_credentials, key=lambda n: n["external_id"])
        ],
        "authentication": [
            {"credential": c["external_id"], "protocol": c["protocol"], "token_url": c.get("token_url"),
             "client_auth_method": c.get("client_auth_method"), "scopes": c.get("scopes") or [],
             "audience": c.get("audience"), "principal_type": c.get("principal_type"),
             "header": c.get("header_name")}
            for c in sorted(credentials, key=lambda c: c["external_id"])
        ],
        "schema_links": contract.get("schema_links", []),
        "rate_limits": {"per_minute": system.get("rate_limit_per_minute"),
                        "daily_api_budget": system.get("daily_api_budget"),
                        "max_concurrent_calls": contract.get("max_concurrent_calls")},
        "sla": system.get("sla") or {},
        "error_codes": contract.get("error_codes", {}),
        "versioning_policy": system.get("api_version_policy"),
        "maintenance_windows": system.get("maintenance_windows") or [],
        "escalation": {"owner": system.get("owner"), "escalation_contact": system.get("escalation_contact"),
                       "runbook": system.get("runbook_url")},
    }


def _cell(value: Any) -> str:
    if value in (None, "", [], {}):
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(c: dict[str, Any]) -> str:
    s = c["system"]
    lines = [f"# Integration contract: {s['name']} (`{s['id']}`)", ""]
    if s["description"]:
        lines += [s["description"], ""]
    lines += ["## Endpoints", "", "| named credential | URL | API | version | methods | paths | timeout |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| `{e['named_credential']}` | {_cell(e['url'])} | {_cell(e['api_type'])} | {_cell(e['api_version'])} "
              f"| {_cell(e['methods'])} | {_cell(e['paths'])} | {_cell(e['timeout_seconds'])} s |" for e in c["endpoints"]]
    if not c["endpoints"]:
        lines.append("| — | | | | | | |")
    lines += ["", "## Authentication", "", "Secrets are held by govern; integrations never receive them.", "",
              "| credential | protocol | token URL | client auth | scopes | principals |", "|---|---|---|---|---|---|"]
    lines += [f"| `{a['credential']}` | {a['protocol']} | {_cell(a['token_url'])} | {_cell(a['client_auth_method'])} "
              f"| {_cell(a['scopes'])} | {_cell(a['principal_type'])} |" for a in c["authentication"]]
    rl = c["rate_limits"]
    lines += ["", "## Rate limits", "", f"- Per minute: {_cell(rl['per_minute'])}",
              f"- Daily API budget: {_cell(rl['daily_api_budget'])}", "", "## SLA", ""]
    lines += [f"- {k}: {_cell(v)}" for k, v in sorted(c["sla"].items())] or ["- —"]
    lines += ["", "## Request and response schemas", ""]
    lines += [f"- {link}" for link in c["schema_links"]] or ["- —"]
    lines += ["", "## Error codes", "", "| code | meaning and expected handling |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in sorted(c["error_codes"].items())] or ["| — | |"]
    lines += ["", "## Versioning policy", "", _cell(c["versioning_policy"]), "", "## Maintenance windows (UTC)", ""]
    lines += [f"- {w.get('day', '?')} {w.get('start', '?')}–{w.get('end', '?')}" for w in c["maintenance_windows"]] or ["- —"]
    e = c["escalation"]
    lines += ["", "## Escalation", "", f"- Owner: {_cell(e['owner'])}", f"- Escalation contact: {_cell(e['escalation_contact'])}",
              f"- Runbook: {_cell(e['runbook'])}", ""]
    return "\n".join(lines)
