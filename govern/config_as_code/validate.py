"""Validate a governance.yaml document and turn it into a landscape of specs.

Every problem is collected, none stops the others: YAML structure, unknown keys, types, secret-looking
keys, duplicate ids, references between entities and scopes. Each error carries `file:line:col` and a
path such as ``integration_users[3].ip_ranges[0]``. References resolve against the document, plus
(without prune) the entities already stored, so that a landscape can be split over several files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable
import ipaddress
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from govern.config_as_code import schema as s
from govern.domain.conditions import cidrs_outside
from govern.config_as_code.specs import KIND_OF, SPEC_OF, Landscape, empty_landscape
from govern.config_as_code.yaml_loader import Located, Path, load, make_error
from govern.errors import ValidationFailed

# Keys whose value would be secret material. Secrets go to the secret store, never into the file.
SECRET_KEYS = frozenset({"client_secret", "password", "private_key", "api_key", "token", "refresh_token", "secret",
                         "access_token", "passphrase", "secret_key", "apikey", "private_key_pem"})
_FREE_FORM = frozenset({"objects", "sla", "error_codes", "jwks", "claims"})  # user-named keys, not schema keys


@dataclass
class Parsed:
    """A document after the shape checks: the valid entities and their positions, and all errors so far."""

    doc: Located
    entities: dict[str, dict[str, tuple[int, Any]]] = field(default_factory=dict)  # kind -> id -> (index, model)
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)


def parse(text: str, filename: str = "<input>") -> Parsed:
    """Load and check shapes. YAML syntax errors raise at once (nothing further can be read)."""
    doc = load(text, filename)
    parsed = Parsed(doc=doc, entities={kind: {} for kind in KIND_OF.values()})
    parsed.errors = doc.errors
    data = doc.data
    if not isinstance(data, dict):
        doc.error((), "the document must be a mapping with apiVersion: govern/v1")
        return parsed
    if data.get("apiVersion") != s.API_VERSION:
        doc.error(("apiVersion",), f"apiVersion must be {s.API_VERSION!r}")
    if data.get("kind", "Landscape") != "Landscape":
        doc.error(("kind",), "kind must be 'Landscape' (the only kind in govern/v1)")
    for key in data:
        if key not in s.TOP_LEVEL:
            doc.error((key,), f"unknown key {key!r}; expected one of {', '.join(s.TOP_LEVEL)}")
    for section, model in s.SECTIONS.items():
        items = data.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            doc.error((section,), f"{section} must be a list")
            continue
        kind = KIND_OF[section]
        for index, raw in enumerate(items):
            _parse_item(parsed, kind, section, index, raw, model)
    return parsed


def _parse_item(parsed: Parsed, kind: str, section: str, index: int, raw: Any, model) -> None:
    doc = parsed.doc
    path = (section, index)
    if not isinstance(raw, dict):
        doc.error(path, f"each entry of {section} must be a mapping")
        return
    _refuse_secret_keys(doc, raw, path)
    if kind == "integration_user" and isinstance(raw.get("permission_sets"), list):
        raw["permission_sets"] = [{"permission_set": a} if isinstance(a, str) else a for a in raw["permission_sets"]]
    ext_id = raw.get("id")
    if isinstance(ext_id, str) and ext_id in parsed.entities[kind]:
        first = parsed.entities[kind][ext_id][0]
        doc.error(path + ("id",), f"duplicate {kind} id {ext_id!r} (first at {section}[{first}], "
                                  f"{doc.location((section, first, 'id'))})")
        return
    before = len(doc.errors)
    try:
        item = model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _data_path(raw, err["loc"])
            doc.error(path + loc, _message(err))
        item = None
    if item is not None:
        RULES.get(kind, lambda *a: None)(doc, path, item)
    if isinstance(ext_id, str):
        # Remember even an invalid entity, so that references to it do not add a second, misleading error.
        parsed.entities[kind][ext_id] = (index, item if len(doc.errors) == before else None)


def _refuse_secret_keys(doc: Located, node: Any, path: Path) -> None:
    if isinstance(node, dict):
        for key in list(node):
            if isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS:
                doc.error(path + (key,), f"{key!r} looks like a secret; secret values never go in governance.yaml: "
                                         "store them with `govern secrets put CREDENTIAL --field FIELD` "
                                         "(value from stdin)")
                del node[key]
            elif key not in _FREE_FORM:
                _refuse_secret_keys(doc, node[key], path + (key,))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _refuse_secret_keys(doc, item, path + (i,))


def _data_path(raw: Any, loc: tuple) -> Path:
    """Pydantic locations name validator steps too (e.g. 'function-before[...]'); keep only real keys."""
    out: list[Any] = []
    node = raw
    for part in loc:
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node) or isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not part.startswith(("function-", "union[")):
            out.append(part)  # a missing or unknown key: point at its parent, name it in the path
            node = None
    return tuple(out)


def _message(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return f"unknown key {err['loc'][-1]!r}"
    if kind == "missing":
        return "required"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, "):]
    if kind == "string_pattern_mismatch" and err["loc"] and err["loc"][-1] in ("id", "system", "credential",
                                                                               "named_credential", "user",
                                                                               "permission_set", "source_system"):
        return "must be an id: lowercase letters, digits, '.', '_' or '-' (at most 200)"
    return msg[0].lower() + msg[1:] if msg else kind


# --- rules that need one whole entity ---------------------------------------------------------------

def _credential_rules(doc: Located, path: Path, c: s.CredentialDoc) -> None:
    if c.protocol in s.OAUTH2:
        if not c.token_url:
            doc.error(path + ("token_url",), f"required for {c.protocol}")
    else:
        for name in ("token_url", "authorize_url", "client_id", "client_auth", "audience"):
            if getattr(c, name) is not None:
                doc.error(path + (name,), f"applies only to oauth2_* protocols, not {c.protocol}")
    if c.authorize_url is not None and c.protocol in s.OAUTH2 and c.protocol != "oauth2_refresh_token":
        doc.error(path + ("authorize_url",), "applies only to oauth2_refresh_token")
    if c.protocol in s.HEADER_PROTOCOLS and not c.header:
        doc.error(path + ("header",), f"required for {c.protocol}")
    if c.protocol not in s.HEADER_PROTOCOLS and c.header is not None:
        doc.error(path + ("header",), f"applies only to api_key_header and custom_header, not {c.protocol}")
    seen: dict[str, int] = {}
    for i, p in enumerate(c.principals):
        where = path + ("principals", i)
        if p.name in seen:
            doc.error(where + ("name",), f"duplicate principal name {p.name!r} in credential {c.id!r} "
                                         f"(first at principals[{seen[p.name]}])")
        seen.setdefault(p.name, i)
        if c.principal_type == "per_user" and not p.user:
            doc.error(where, "per_user principals need `user` (the integration user it belongs to)")
        if c.principal_type == "named" and p.user:
            doc.error(where + ("user",), "only per_user principals belong to a user; set principal_type: per_user")


def _user_rules(doc: Located, path: Path, u: s.IntegrationUserDoc) -> None:
    if u.jwks and u.auth != "private_key_jwt":
        doc.error(path + ("jwks",), "applies only to auth: private_key_jwt")
    if u.jwks:
        keys = u.jwks.get("keys")
        if not isinstance(keys, list):
            doc.error(path + ("jwks",), "must be a JWK Set (RFC 7517 section 5): {keys: [...]}")
            keys = []
        for i, key in enumerate(keys):
            where = path + ("jwks", "keys", i)
            if not isinstance(key, dict) or "kty" not in key:
                doc.error(where, "not a JWK (no kty)")
                continue
            private = sorted(m for m in s.PRIVATE_JWK_MEMBERS if m in key)
            if private:
                doc.error(where, f"has private key members ({', '.join(private)}); register only the public key")
    seen: set[str] = set()
    for i, a in enumerate(u.permission_sets):
        if a.permission_set in seen:
            doc.error(path + ("permission_sets", i), f"permission set {a.permission_set!r} is assigned twice")
        seen.add(a.permission_set)


RULES: dict[str, Callable[..., None]] = {"credential": _credential_rules, "integration_user": _user_rules}


# --- rules across entities ----------------------------------------------------------------------------

# --- plain HTTP upstream URLs -------------------------------------------------------------------------

# Where a client secret, a refresh token, an assertion or an injected credential travels.
UPSTREAM_URL_FIELDS = {"credentials": ("token_url", "authorize_url", "revocation_endpoint"), "named_credentials": ("url",)}
PLAIN_HTTP = ("plain http sends the credential in clear over the network; use https")


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_urls(doc: Located) -> list[tuple[Path, str, bool]]:
    """Every http:// upstream URL in the document: (path, url, on a loopback host)."""
    found = []
    for section, names in UPSTREAM_URL_FIELDS.items():
        for index, _ in enumerate(_raw_list(doc, (section,))):
            for name in names:
                url = _raw(doc, (section, index, name))
                if not isinstance(url, str) or urlsplit(url).scheme.lower() != "http":
                    continue
                try:
                    host = urlsplit(url).hostname
                except ValueError:
                    host = None
                found.append(((section, index, name), url, _loopback(host)))
    return found


def check_transport(parsed: Parsed, *, production: bool) -> None:
    """Production refuses every http:// upstream URL (an error, nothing is applied). Development warns,
    except for loopback hosts (a sandbox or a test server on this machine: nothing crosses a network)."""
    for path, _url, loopback in plain_http_urls(parsed.doc):
        if production:
            parsed.doc.error(path, f"{PLAIN_HTTP} (refused in production)")
        elif not loopback:
            parsed.warnings.append(make_error(parsed.doc, path, f"{PLAIN_HTTP} (refused in production)"))


def check(parsed: Parsed, current: Landscape | None = None, *, prune: bool = False,
          production: bool = False) -> Landscape:
    """References and scopes, then the desired landscape. Raises ValidationFailed listing every error."""
    doc = parsed.doc
    check_transport(parsed, production=production)
    current = current or empty_landscape()
    desired: Landscape = empty_landscape()
    for kind, items in parsed.entities.items():
        for ext_id, (_, model) in items.items():
            if model is not None:
                desired[kind][ext_id] = SPEC_OF[kind](model)
    # What references may point at: the document's entities (valid or not) and, unless pruning, stored ones.
    known = {kind: set(parsed.entities[kind]) | (set() if prune else set(current[kind])) for kind in desired}

    # Scopes of systems that failed validation still count, read from the raw document, so that one broken
    # system does not turn every scope that it declares into a second error elsewhere.
    system_scopes = {ext_id: set(spec["scopes"]) for ext_id, spec in ({} if prune else current["system"]).items()}
    for ext_id, (index, _) in parsed.entities["system"].items():
        system_scopes[ext_id] = {x for x in _raw_list(doc, ("systems", index, "scopes")) if isinstance(x, str)}
    all_scopes = set().union(*system_scopes.values()) if system_scopes else set()

    def ref(path: Path, kind: str, value: Any) -> bool:
        if not isinstance(value, str):
            return False  # missing or of the wrong type: reported by the shape checks
        if value not in known[kind]:
            doc.error(path, f"unknown {kind} {value!r}")
            return False
        return True

    def scopes(path: Path, allowed: set[str], where: str) -> None:
        for i, scope in enumerate(_raw_list(doc, path)):
            if isinstance(scope, str) and scope not in allowed:
                doc.error(path + (i,), f"unknown scope {scope!r}: {where}")

    def principals_of(credential: str) -> set[str] | None:
        if credential in parsed.entities["credential"]:
            index = parsed.entities["credential"][credential][0]
            return {p["name"] for p in _raw_list(doc, ("credentials", index, "principals"))
                    if isinstance(p, dict) and isinstance(p.get("name"), str)}
        stored = None if prune else current["credential"].get(credential)
        return {p["name"] for p in stored["principals"]} if stored else None

    def credential_of(named_credential: str) -> Any:
        if named_credential in parsed.entities["named_credential"]:
            index = parsed.entities["named_credential"][named_credential][0]
            return _raw(doc, ("named_credentials", index, "credential"))
        stored = None if prune else current["named_credential"].get(named_credential)
        return stored["credential"] if stored else None

    for index, _ in parsed.entities["credential"].values():
        path = ("credentials", index)
        system = _raw(doc, path + ("system",))
        if ref(path + ("system",), "system", system) and system in system_scopes:
            scopes(path + ("scopes",), system_scopes[system], f"system {system!r} does not declare it")
        if _raw(doc, path + ("principal_type",)) == "per_user":
            for i, p in enumerate(_raw_list(doc, path + ("principals",))):
                if isinstance(p, dict):
                    ref(path + ("principals", i, "user"), "integration_user", p.get("user"))
    for index, _ in parsed.entities["named_credential"].values():
        path = ("named_credentials", index)
        ref(path + ("credential",), "credential", _raw(doc, path + ("credential",)))
    for index, _ in parsed.entities["integration_user"].values():
        path = ("integration_users", index)
        ref(path + ("source_system",), "system", _raw(doc, path + ("source_system",)))
        scopes(path + ("scopes",), all_scopes, "no system declares it")
        for i, a in enumerate(_raw_list(doc, path + ("permission_sets",))):
            name = a.get("permission_set") if isinstance(a, dict) else a
            ref(path + ("permission_sets", i) + (("permission_set",) if isinstance(a, dict) else ()),
                "permission_set", name)
    for index, _ in parsed.entities["permission_set"].values():
        path = ("permission_sets", index)
        scopes(path + ("scopes",), all_scopes, "no system declares it")
        for i, grant in enumerate(_raw_list(doc, path + ("grants",))):
            if not isinstance(grant, dict):
                continue
            gpath = path + ("grants", i)
            nc = grant.get("named_credential")
            if not ref(gpath + ("named_credential",), "named_credential", nc) or not isinstance(grant.get("principal"), str):
                continue
            credential = credential_of(nc) if isinstance(nc, str) else None
            names = principals_of(credential) if isinstance(credential, str) else None
            if names is not None and grant["principal"] not in names:
                doc.error(gpath + ("principal",), f"credential {credential!r} has no principal {grant['principal']!r}")
    _check_condition_sources(doc, parsed, desired, current, prune)
    if doc.errors:
        raise ValidationFailed(sorted(doc.errors, key=lambda e: (e["line"], e["column"], e["path"])))
    return desired


def _check_condition_sources(doc: Located, parsed: Parsed, desired: Landscape, current: Landscape, prune: bool) -> None:
    """A permission set's `conditions.source_cidrs` only narrow: each range must lie inside the `ip_ranges` of every
    integration user assigned the set (in the document, or stored unless pruning)."""
    users = {**({} if prune else current["integration_user"]), **desired["integration_user"]}
    psets = {**({} if prune else current["permission_set"]), **desired["permission_set"]}
    for user_id, user in sorted(users.items()):
        for assignment in user["permission_sets"]:
            pset_id = assignment["permission_set"]
            sources = (psets.get(pset_id) or {}).get("conditions", {}).get("source_cidrs") or []
            wider = cidrs_outside(sources, user["ip_ranges"])
            if not wider:
                continue
            message = (f"conditions.source_cidrs of permission set {pset_id!r} must lie within the ip_ranges of "
                       f"integration user {user_id!r} ({', '.join(user['ip_ranges']) or 'none'}); "
                       f"wider: {', '.join(wider)}")
            if pset_id in parsed.entities["permission_set"]:
                index = parsed.entities["permission_set"][pset_id][0]
                doc.error(("permission_sets", index, "conditions", "source_cidrs",
                           sources.index(wider[0])), message)
            elif user_id in parsed.entities["integration_user"]:
                doc.error(("integration_users", parsed.entities["integration_user"][user_id][0], "ip_ranges"), message)


def _raw(doc: Located, path: Path) -> Any:
    node: Any = doc.data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node.strip() if isinstance(node, str) else node


def _raw_list(doc: Located, path: Path) -> list:
    node = _raw(doc, path)
    return [x.strip() if isinstance(x, str) else x for x in node] if isinstance(node, list) else []


def validate_document(text: str, filename: str = "<input>", current: Landscape | None = None, *,
                      prune: bool = False, production: bool = False) -> Landscape:
    """parse + check: the desired landscape, or ValidationFailed with every error."""
    return check(parse(text, filename), current, prune=prune, production=production)
