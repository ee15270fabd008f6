"""A hand-written checker for the JSON Schema subset docs/audit-report.schema.json uses (type, required,
properties, items, enum): jsonschema is not installed, and this subset is small enough to check by hand."""
from __future__ import annotations

TYPES = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool, "null": type(None),
         "number": (int, float)}


def errors(schema: dict, value, path: str = "$") -> list[str]:
    out: list[str] = []
    types = schema.get("type")
    if types:
        names = types if isinstance(types, list) else [types]
        ok = any(isinstance(value, TYPES[n]) and not (n == "integer" and isinstance(value, bool)) for n in names)
        if not ok:
            return [f"{path}: expected {names}, got {type(value).__name__}"]
    if value is None:
        return out
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: missing {key}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                out += errors(sub, value[key], f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += errors(schema["items"], item, f"{path}[{i}]")
    return out
