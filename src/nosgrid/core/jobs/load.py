"""Job definitions from text: JSON or YAML in, a validated model or every error (by path) out.

Also content addressing (canonical JSON and ``spec_hash``) and the published JSON Schema.
Pure: parses only the text handed in.

>>> defn = load_job_definition('{"version": "0.1", "type": "container", "ops": []}')
>>> canonical_json(defn)
b'{"ops":[],"type":"container","version":"0.1"}'
>>> load_job_definition("version: '0.1'\\ntype: vm\\nops: []\\n", filename="job.yaml")
Traceback (most recent call last):
...
nosgrid.core.errors.InvalidJobSpec: invalid job definition: type: expected 'container', got 'vm'
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from nosgrid.core.errors import InvalidJobSpec
from nosgrid.core.jobs.base import PROBLEMS_ERROR
from nosgrid.core.jobs.spec import JobDefinition
from nosgrid.core.text import bad_text, text_problem

MAX_SPEC_BYTES: Final = 256 * 1024
MAX_DEPTH: Final = 64
_TOO_DEEP: Final = f"the definition is nested more than {MAX_DEPTH} levels deep"
SCHEMA_ID: Final = "https://nosgrid.dev/schemas/job-spec.schema.json"

_IDENT_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-/]*$")
_TYPE_NAMES: Final = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "literal_error": "",
}


def load_job_definition(data: bytes | str, *, filename: str | None = None) -> JobDefinition:
    """Parse and validate a job definition written as JSON or YAML.

    YAML is read when ``filename`` ends in ``.yaml``/``.yml``, or when there is no
    filename and the text does not start with ``{``. Raises ``InvalidJobSpec`` whose
    ``errors`` lists every problem as ``path: message`` (syntax errors included).

    >>> load_job_definition(b"ops: []", filename="x.yml").errors
    Traceback (most recent call last):
    ...
    nosgrid.core.errors.InvalidJobSpec: invalid job definition: version: field required; type: field required
    """  # noqa: E501
    if isinstance(data, str) and (problem := text_problem(data, nul=False)) is not None:
        raise InvalidJobSpec(errors=[f"the definition {problem}; save it as UTF-8 text"])
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_SPEC_BYTES:
        raise InvalidJobSpec(
            errors=[f"the definition is {len(raw)} bytes; the limit is {MAX_SPEC_BYTES} (256 KiB)"]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidJobSpec(errors=[f"the definition is not UTF-8 text: {exc.reason}"]) from exc
    tree = _parse_text(text, filename)
    return parse_job_definition(tree)


def parse_job_definition(tree: object) -> JobDefinition:
    """Validate an already-parsed JSON value (e.g. an API body) as a job definition.

    >>> parse_job_definition({"version": "1", "type": "container", "ops": []}).version
    '1'
    """
    if not isinstance(tree, dict):
        got = _json_type(tree)
        raise InvalidJobSpec(errors=[f"the definition must be an object, got {got}"])
    size_problem = _size_problem(tree)
    if size_problem is not None:
        raise InvalidJobSpec(errors=[size_problem])
    # a lone surrogate cannot be encoded (stored, hashed, answered); a NUL cannot reach a
    # container's argv, environment or paths: no string of a definition may hold either
    if bad := bad_text(tree):
        raise InvalidJobSpec(errors=[f"{path}: {problem}" if path else problem
                                     for path, problem in bad])
    try:
        defn = JobDefinition.model_validate(tree)
    except ValidationError as exc:
        raise InvalidJobSpec(errors=validation_messages(exc, tree)) from exc
    size = len(canonical_json(defn))
    if size > MAX_SPEC_BYTES:
        raise InvalidJobSpec(
            errors=[f"the definition is {size} bytes as JSON; the limit is {MAX_SPEC_BYTES}"]
        )
    return defn


def canonical_json(defn: JobDefinition) -> bytes:
    """The canonical bytes of a definition: the keys as written, sorted, no spaces, UTF-8.

    Defaults the author left out stay out, so the hash names what was written.
    """
    body = defn.model_dump(mode="json", by_alias=True, exclude_unset=True)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def spec_hash(defn: JobDefinition) -> str:
    """sha256 (hex) of :func:`canonical_json`: the content address of the definition.

    >>> len(spec_hash(load_job_definition('{"version":"0.1","type":"container","ops":[]}')))
    64
    """
    return hashlib.sha256(canonical_json(defn)).hexdigest()


def job_definition_schema() -> dict[str, Any]:
    """The JSON Schema of a job definition (what ``schemas/job-spec.schema.json`` holds)."""
    schema = _without_nulls(JobDefinition.model_json_schema(by_alias=True, mode="validation"))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def job_definition_schema_text() -> str:
    """:func:`job_definition_schema` as the exact text of the committed schema file."""
    return json.dumps(job_definition_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _without_nulls(node: Any) -> Any:
    """Optional keys are left out, never null (as in Nosana's validators): say so."""
    if isinstance(node, list):
        return [_without_nulls(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _without_nulls(value) for key, value in node.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and out.get("default", 0) is None:
        kept = [option for option in options if option != {"type": "null"}]
        del out["default"], out["anyOf"]
        out.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
    return out


# --- parsing ---------------------------------------------------------------------------


class _BadJson(ValueError):
    pass


def _parse_text(text: str, filename: str | None) -> object:
    name = (filename or "").lower()
    as_yaml = name.endswith((".yaml", ".yml")) or (
        not name.endswith(".json") and not text.lstrip().startswith("{")
    )
    return _parse_yaml(text) if as_yaml else _parse_json(text)


def _parse_json(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_json_object, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        msg = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise InvalidJobSpec(errors=[msg]) from exc
    except _BadJson as exc:
        raise InvalidJobSpec(errors=[f"invalid JSON: {exc}"]) from exc
    except RecursionError as exc:
        raise InvalidJobSpec(errors=[_TOO_DEEP]) from exc


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _BadJson(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> object:
    raise _BadJson(f"{name} is not a JSON number")


class _Loader(yaml.SafeLoader):
    """Safe YAML without timestamps (kept as strings) and with duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark,
                )  # fmt: skip
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _flow_depth_exceeded(text: str) -> bool:
    """PyYAML is slow on deep flow nesting (``[[[[…``): refuse it before parsing."""
    depth, quote, escaped = 0, "", False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth = max(0, depth - 1)
    return False


def _parse_yaml(text: str) -> object:
    if _flow_depth_exceeded(text):
        raise InvalidJobSpec(errors=[_TOO_DEEP])
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidJobSpec(errors=[f"invalid YAML{where}: {exc.problem}"]) from exc
    except yaml.YAMLError as exc:
        raise InvalidJobSpec(errors=[f"invalid YAML: {exc}"]) from exc
    except RecursionError as exc:
        raise InvalidJobSpec(errors=[_TOO_DEEP]) from exc


def _size_problem(tree: object) -> str | None:
    """Refuse non-finite numbers, deep nesting, and trees too large (YAML aliases expand)."""
    budget = MAX_SPEC_BYTES
    stack: list[tuple[object, int]] = [(tree, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 2
        if depth > MAX_DEPTH:
            return _TOO_DEEP
        if isinstance(item, dict):
            stack.extend((value, depth + 1) for value in item.values())
            budget -= sum(len(str(key)) + 3 for key in item)
        elif isinstance(item, list):
            stack.extend((value, depth + 1) for value in item)
        elif isinstance(item, str):
            budget -= len(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{item} is not a JSON number"
        if budget < 0:
            return f"the definition is larger than {MAX_SPEC_BYTES} bytes (256 KiB) as JSON"
    return None


# --- error messages ----------------------------------------------------------------------


def validation_messages(exc: ValidationError, tree: object) -> list[str]:
    """Pydantic errors as ``path: message`` lines, paths in the form ``ops[2].args.expose[0]``.

    Union-branch tags are hidden by walking the input alongside each error location, and
    alternatives that failed only on type are merged into one "expected X or Y" message.
    """
    entries: list[tuple[str, str, ErrorDetails]] = []
    for err in exc.errors():
        path = _path(err["loc"], tree, missing=err["type"] == "missing")
        if err["type"] == "invalid_type_tag":
            entries.append((_join(path, "type"), _type_tag_message(err), err))
        elif err["type"] == PROBLEMS_ERROR:
            for sub, msg in err.get("ctx", {}).get("problems", []):
                entries.append((_join(path, sub), msg, err))
        else:
            entries.append((path, _message(err), err))
    # A type-only failure at P is noise when another branch got further, below P.
    deeper = {p for p, _, _ in entries}
    kept = [
        (p, m, e)
        for p, m, e in entries
        if e["type"] not in _TYPE_NAMES or not any(_below(d, p) for d in deeper)
    ]
    lines: list[str] = []
    merged: dict[str, list[ErrorDetails]] = {}
    for path, msg, err in kept:
        if err["type"] in _TYPE_NAMES:
            if path not in merged:
                merged[path] = []
                lines.append(f"\0{path}")
            merged[path].append(err)
        else:
            lines.append(f"{path}: {msg}" if path else msg)
    out: list[str] = []
    for line in lines:
        if line.startswith("\0"):
            path = line[1:]
            line = _merged_type_message(path, merged[path])
        if line not in out:
            out.append(line)
    return out


def _below(path: str, prefix: str) -> bool:
    if not prefix:
        return path != ""
    return path.startswith((prefix + ".", prefix + "["))


def _path(loc: tuple[int | str, ...], tree: object, *, missing: bool) -> str:
    path = ""
    cur: object = tree
    for i, element in enumerate(loc):
        if isinstance(element, int) and isinstance(cur, list) and 0 <= element < len(cur):
            path += f"[{element}]"
            cur = cur[element]
        elif isinstance(element, str) and isinstance(cur, dict):
            if element in cur:
                path = _join(path, _key(element))
                cur = cur[element]
            elif missing and i == len(loc) - 1:
                path = _join(path, _key(element))
        # anything else is a union tag or '[key]': not part of the user's path
    return path


def _key(key: str) -> str:
    return key if _IDENT_RE.match(key) else json.dumps(key, ensure_ascii=False)


def _join(path: str, sub: str) -> str:
    if not sub:
        return path
    if not path or sub.startswith("["):
        return path + sub
    return f"{path}.{sub}"


def _message(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown field (not allowed here)"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "too_long" and err.get("ctx"):
        return f"at most {err['ctx'].get('max_length')} items allowed, got {err['ctx'].get('actual_length')}"  # noqa: E501
    if msg.startswith("Input should be "):
        return "must be " + msg.removeprefix("Input should be ")
    return msg[:1].lower() + msg[1:]


def _type_tag_message(err: ErrorDetails) -> str:
    given = err.get("input")
    expected = err["msg"].removeprefix("'type' must be ")
    if isinstance(given, dict) and "type" in given:
        return f"expected {expected}, got {given['type']!r}"
    return f"field required ({expected})"


def _merged_type_message(path: str, errs: list[ErrorDetails]) -> str:
    wanted: list[str] = []
    for err in errs:
        name = _TYPE_NAMES[err["type"]]
        if err["type"] == "literal_error":
            name = str(err.get("ctx", {}).get("expected", "one of the allowed values"))
        if name not in wanted:
            wanted.append(name)
    got = _json_type(errs[0].get("input"))
    if errs[0]["type"] == "literal_error" and isinstance(errs[0].get("input"), str):
        got = repr(errs[0].get("input"))
    text = f"expected {' or '.join(wanted)}, got {got}"
    return f"{path}: {text}" if path else text


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
