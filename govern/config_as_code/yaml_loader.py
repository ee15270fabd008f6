"""Load YAML into plain data and remember where every node was written.

PyYAML's composer gives nodes with start marks; we walk them ourselves so that each value's path
(a tuple of keys and list indexes, e.g. ``("integration_users", 3, "ip_ranges", 0)``) maps to its
1-based (line, column). Validation errors then point at `file:line:col`. Duplicate mapping keys, which
PyYAML silently overwrites, are errors here (YAML 1.2 section 3.2.1.1: keys are unique).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from govern.errors import ValidationFailed

try:  # the libyaml parser is several times faster on large landscapes
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

Path = tuple[Any, ...]


@dataclass
class Located:
    """A parsed document: plain data, the position of every node, and the errors found while loading."""

    data: Any
    filename: str
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def where(self, path: Path) -> tuple[int, int]:
        """The position of `path`, or of its nearest ancestor that was written in the file."""
        path = tuple(path)
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))

    def location(self, path: Path) -> str:
        line, col = self.where(path)
        return f"{self.filename}:{line}:{col}"

    def error(self, path: Path, message: str) -> None:
        self.errors.append(make_error(self, path, message))


def format_path(path: Path) -> str:
    """``("integration_users", 3, "ip_ranges", 0)`` -> ``integration_users[3].ip_ranges[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def make_error(doc: Located, path: Path, message: str) -> dict[str, Any]:
    line, col = doc.where(path)
    return {"location": f"{doc.filename}:{line}:{col}", "file": doc.filename, "line": line, "column": col,
            "path": format_path(path), "message": message}


def load(text: str, filename: str = "<input>") -> Located:
    """Parse one YAML document. A syntax error raises ValidationFailed with its `file:line:col`."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ValidationFailed([{"location": f"{filename}:{line}:{col}", "file": filename, "line": line,
                                 "column": col, "path": "", "message": f"YAML syntax error: {problem}"}]) from None
    except yaml.YAMLError:
        raise ValidationFailed([{"location": f"{filename}:1:1", "file": filename, "line": 1, "column": 1,
                                 "path": "", "message": "YAML syntax error"}]) from None
    finally:
        loader.dispose()
    doc = Located(data=None, filename=filename)
    if node is None:
        doc.data = {}
        return doc
    constructor = yaml.SafeLoader("")  # only its scalar constructors are used
    try:
        doc.data = _walk(node, (), doc, constructor)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ValidationFailed([{"location": f"{filename}:{line}:{col}", "file": filename, "line": line,
                                 "column": col, "path": "", "message": f"YAML error: {exc.problem}"}]) from None
    return doc


def _walk(node: yaml.Node, path: Path, doc: Located, constructor: yaml.SafeLoader) -> Any:
    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # resolves `<<` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                doc.positions[path + (str(key),)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                doc.error(path + (str(key),), "mapping keys must be plain scalars")
                continue
            if isinstance(key, bool):
                key = str(key).lower()  # YAML 1.1 reads `on`/`yes` as booleans
            if key in out:
                doc.positions.setdefault(path + (key,), (key_node.start_mark.line + 1, key_node.start_mark.column + 1))
                doc.errors.append({**make_error(doc, path + (key,), f"duplicate key {key!r}"),
                                   "location": f"{doc.filename}:{key_node.start_mark.line + 1}:"
                                               f"{key_node.start_mark.column + 1}",
                                   "line": key_node.start_mark.line + 1, "column": key_node.start_mark.column + 1})
                continue
            out[key] = _walk(value_node, path + (key,), doc, constructor)
            # An entry is located at its key: that is where a reader looks for "unknown key" or a bad value.
            doc.positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, path + (i,), doc, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)
