"""An AuditModel as JSON and back, so that an imported org is kept (`govern import salesforce`) and audited again
by every `govern audit` without its metadata directory.

What is kept holds no secret value: values that look like secrets (govern.audit.secret_scan) are replaced by
a marker naming their kind, which the scanner recognises, so the rules find the same secrets after the round trip
and a report still never repeats them (seed §6: "Never store credentials in Custom Settings, custom metadata...").
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from typing import Any

from govern.audit import model as m
from govern.audit.secret_scan import redact_config, redact_url

# Fields of a metadata model worth keeping; decision-log aggregates and caches belong to govern's own source.
_SKIP = {"cache", "usage", "usage_loaded", "last_allowed_at", "log_since", "log_covers_window", "policy", "now"}


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in _SKIP}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_decode(item, v) for v in value]
    if origin is tuple:
        return tuple(_decode(a, v) for a, v in zip(typing.get_args(tp), value, strict=False))
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _decode(item, v) for k, v in value.items()}
    if tp is dt.datetime:
        return dt.datetime.fromisoformat(value)
    if tp is dt.date:
        return dt.date.fromisoformat(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp, vars(m))
        return tp(**{f.name: _decode(hints[f.name], value[f.name]) for f in dataclasses.fields(tp)
                     if f.init and f.name in value})
    return value


def _redact(model: m.AuditModel) -> None:
    for c in model.credentials.values():
        c.config = redact_config(c.config)
    for nc in model.named_credentials.values():
        nc.config = redact_config(nc.config)
        nc.url = redact_url(nc.url)
    for app in model.connected_apps.values():
        app.callback_urls = [redact_url(u) for u in app.callback_urls]
    for s in model.systems.values():
        s.config = redact_config(s.config)


def to_json(model: m.AuditModel) -> dict[str, Any]:
    """The model as plain JSON data, secret-looking values replaced by their kind. Redacts `model` in place."""
    _redact(model)
    return _encode(model)


def from_json(data: dict[str, Any], now: dt.datetime, policy: m.AuditPolicy | None = None) -> m.AuditModel:
    model = _decode(m.AuditModel, {**data, "now": now.isoformat()})
    model.policy = policy or m.AuditPolicy()
    return model
