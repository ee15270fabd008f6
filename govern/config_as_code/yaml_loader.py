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
    _Base = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Base = yaml.SafeLoader

_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader with a memoised tag resolver.

    Even with libyaml, PyYAML resolves every node's tag in Python (regexes per plain scalar); on a
    landscape of 10,000 users that is most of the parse time. Plain scalars resolve by value alone
    (no path resolvers are registered), so the result is cached per document.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._tags: dict[str, str] = {}

    def descend_resolver(self, current_node, current_index):
        pass

    def ascend_resolver(self):
        pass

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode:
            if not implicit[0]:
                return _STR
            tag = self._tags.get(value)
            if tag is None:
                tag = self._tags[value] = super().resolve(kind, value, implicit)
            return tag
        return _SEQ if kind is yaml.SequenceNode else _MAP

Path = tuple[Any, ...]


@dataclass
class Located:
    """A parsed document: plain data, its node tree (for positions), and the errors found while loading.

    Positions are looked up in the node tree only when an error needs one, so that a large valid
    landscape pays nothing for them.
    """

    data: Any
    filename: str
    root: Any = None  # the composed yaml.Node
    errors: list[dict[str, Any]] = field(default_factory=list)

    def where(self, path: Path) -> tuple[int, int]:
        """1-based (line, column) of `path`, or of its nearest ancestor written in the file.

        A mapping entry is located at its key: that is where a reader looks for an unknown key or a bad value.
        """
        node = self.root
        if node is None:
            return (1, 1)
        mark = node.start_mark
        for part in path:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                        mark, node = key_node.start_mark, value_node
                        break
                else:
                    break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                mark = node.start_mark
            else:
                break
        return (mark.line + 1, mark.column + 1)

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
    doc = Located(data=None, filename=filename, root=node)
    if node is None:
        doc.data = {}
        return doc
    constructor = yaml.SafeLoader("")  # only its scalar constructors are used
    try:
        doc.data = _walk(node, [], doc, constructor)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ValidationFailed([{"location": f"{filename}:{line}:{col}", "file": filename, "line": line,
                                 "column": col, "path": "", "message": f"YAML error: {exc.problem}"}]) from None
    return doc


def _walk(node: yaml.Node, path: list, doc: Located, constructor: yaml.SafeLoader) -> Any:
    """Plain data from nodes; `path` is a stack, copied only when an error is recorded."""
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # resolves `<<` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if key_node.tag == _STR else constructor.construct_object(key_node, deep=True)
            if isinstance(key, bool):
                key = str(key).lower()  # YAML 1.1 reads `on`/`yes` as booleans
            if not isinstance(key, (str, int, float)):
                doc.error(tuple(path), "mapping keys must be plain scalars")
                continue
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                doc.errors.append({"location": f"{doc.filename}:{line}:{col}", "file": doc.filename, "line": line,
                                   "column": col, "path": format_path((*path, key)), "message": f"duplicate key {key!r}"})
                continue
            path.append(key)
            out[key] = _walk(value_node, path, doc, constructor)
            path.pop()
        return out
    if isinstance(node, yaml.SequenceNode):
        out_list = []
        for i, item in enumerate(node.value):
            path.append(i)
            out_list.append(_walk(item, path, doc, constructor))
            path.pop()
        return out_list
    if node.tag == _STR:  # most scalars; skip construct_object's bookkeeping
        return node.value
    return constructor.construct_object(node, deep=True)
