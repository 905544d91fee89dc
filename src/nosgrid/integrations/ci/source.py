"""Workflow YAML read the way GitHub reads it, with the line of every key kept.

PyYAML speaks YAML 1.1, where ``on``, ``yes`` and ``off`` are booleans: a workflow's
``on:`` would become the key ``True``. GitHub's parser follows YAML 1.2's core schema, so
only ``true``/``false`` are booleans here, timestamps stay strings, and a duplicate key is
an error. ``Source.line(path)`` answers the line a field is on, for error messages.

>>> src = load_source("on: push\\njobs:\\n  a:\\n    runs-on: x\\n", "ci.yml")
>>> src.data["on"], src.line(("jobs", "a", "runs-on"))
('push', 4)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from nosgrid.integrations.ci.errors import InvalidWorkflow

MAX_WORKFLOW_BYTES: Final = 512 * 1024
MAX_NODES: Final = 200_000  # aliases can expand a small file into a huge tree
Path_ = tuple[str | int, ...]

_BOOL_RE: Final = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and no timestamps."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_RE, list("tTfF"))


@dataclass
class Source:
    """A parsed workflow: the plain data, the file name, and the line of each path."""

    filename: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int:
        """The line of ``path``, or of its nearest parent that has one (1 at worst)."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def where(self, path: Path_) -> str:
        """``FILE:LINE: field`` for an error message."""
        name = dotted(path)
        return f"{self.filename}:{self.line(path)}: {name}" if name else \
            f"{self.filename}:{self.line(path)}"


def dotted(path: Path_) -> str:
    """``("jobs", "a", "steps", 2, "uses")`` → ``jobs.a.steps[2].uses``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def load_source(text: str | bytes, filename: str) -> Source:
    """Parse a workflow file; ``InvalidWorkflow`` (with the line) on bad YAML."""
    if isinstance(text, bytes):
        if len(text) > MAX_WORKFLOW_BYTES:
            raise InvalidWorkflow(errors=[f"{filename}: the file is {len(text)} bytes; the "
                                          f"limit is {MAX_WORKFLOW_BYTES}"])
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidWorkflow(errors=[f"{filename}: not UTF-8 text ({exc.reason})"]) from exc
    if len(text) > MAX_WORKFLOW_BYTES:
        raise InvalidWorkflow(errors=[f"{filename}: the file is larger than "
                                      f"{MAX_WORKFLOW_BYTES} bytes"])
    try:
        root = yaml.compose(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else 1
        raise InvalidWorkflow(errors=[f"{filename}:{line}: invalid YAML: {exc.problem}"]) from exc
    except yaml.YAMLError as exc:
        raise InvalidWorkflow(errors=[f"{filename}: invalid YAML: {exc}"]) from exc
    src = Source(filename, None)
    if root is None:
        raise InvalidWorkflow(errors=[f"{filename}:1: the file is empty"])
    budget = [MAX_NODES]
    try:
        src.data = _build(root, (), src, budget, 0)
    except RecursionError as exc:
        raise InvalidWorkflow(errors=[f"{filename}: the file is nested too deeply"]) from exc
    return src


_constructor = _Loader("")


def _build(node: yaml.Node, path: Path_, src: Source, budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidWorkflow(errors=[f"{src.filename}: the file expands past {MAX_NODES} "
                                      "values (YAML aliases?)"])
    if depth > 64:
        raise InvalidWorkflow(errors=[f"{src.where(path)}: nested more than 64 levels deep"])
    src.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise InvalidWorkflow(errors=[
                    f"{src.filename}:{key_node.start_mark.line + 1}: a key must be a string"])
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise InvalidWorkflow(errors=[
                    f"{src.filename}:{key_node.start_mark.line + 1}: merge keys ('<<') are "
                    "not supported by GitHub workflows"])
            key = str(key_node.value)
            if key in out:
                raise InvalidWorkflow(errors=[
                    f"{src.filename}:{key_node.start_mark.line + 1}: {dotted((*path, key))}: "
                    "duplicate key"])
            src.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*path, key), src, budget, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), src, budget, depth + 1)
                for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    try:
        return _constructor.construct_object(node)
    except yaml.YAMLError as exc:
        raise InvalidWorkflow(errors=[f"{src.where(path)}: {exc}"]) from exc
