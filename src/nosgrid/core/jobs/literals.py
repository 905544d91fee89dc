"""Templating of op args: ``%%…%%`` literals and the collection markers, as Nosana's node does it.

Run :func:`resolve_op_args` on an op's args (a JSON object) just before the op starts:
literals are interpolated first, then ``__spread__``/``__pairs__`` are applied, then
``"__remove-if-empty__"`` elements are dropped. Pure: every value comes from the
:class:`LiteralContext` handed in.

>>> ctx = LiteralContext(variables={"MODEL": "llama3"},
...                      ops={"probe": {"results": {"port": ["port=8080", "8080"]}}})
>>> resolve_op_args({"cmd": ["serve", "%%global.variables.MODEL%%"],
...                  "expose": "%%ops.probe.results.port.1%%"}, ctx)
{'cmd': ['serve', 'llama3'], 'expose': 8080}
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

from nosgrid.core.errors import InvalidInput
from nosgrid.core.jobs.refs import LITERAL_ANYWHERE, PAIRS_KEY, REMOVE_IF_EMPTY, SPREAD_KEY

#: Arg keys whose value is not a string: an exact literal there keeps the value's type.
TYPED_FIELDS: Final = frozenset(
    {
        "expose", "port", "gpu", "private", "required_vram", "restart_tries",
        "expected_status", "continuous", "body", "allowWrite",
    }
)  # fmt: skip
_GLOBAL_KEYS: Final = frozenset({"job", "project", "host", "frps_address"})
_OP_FIELDS: Final = ("results", "host", "endpoint", "deployment_endpoint")


class TemplateError(InvalidInput):
    """A literal or collection marker could not be applied; the op fails before it starts."""

    code = "template_error"
    http_status = 422
    default_message = "The op's templating failed; check its literals and markers."


class UnresolvedLiteral(TemplateError):
    """A ``%%…%%`` literal has no value (yet): an unknown op or key, or an empty global.

    >>> UnresolvedLiteral("%%global.job%%", "no job id").literal
    '%%global.job%%'
    """

    code = "unresolved_literal"

    def __init__(self, literal: str, reason: str) -> None:
        self.literal = literal
        super().__init__(f"literal {literal} does not resolve: {reason}")
        self.details["literal"] = literal


@dataclass(frozen=True)
class LiteralRef:
    """A parsed literal: ``scope`` is ``ops`` or ``global``; ``path`` the parts after the id."""

    text: str
    scope: str
    op_id: str | None
    path: tuple[str, ...]


@dataclass(frozen=True)
class LiteralContext:
    """Everything literals may resolve to, gathered by the node agent.

    ``ops`` maps an op id to ``{"host": str, "results": {name: value},
    "endpoint": {port: url}, "deployment_endpoint": str}`` (any subset).
    """

    job: str | None = None
    project: str | None = None
    host: str | None = None
    frps_address: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    ops: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def find_literals(text: str) -> list[str]:
    """Every literal inside ``text``, in order.

    >>> find_literals("http://%%ops.srv.host%%:%%global.variables.PORT%%/v1")
    ['%%ops.srv.host%%', '%%global.variables.PORT%%']
    """
    return LITERAL_ANYWHERE.findall(text)


def parse_literal(text: str, op_ids: Collection[str] = ()) -> LiteralRef:
    """Parse one literal. Op ids may contain dots when ``op_ids`` lists them.

    >>> parse_literal("%%ops.gpt-oss:1.5b.results.url%%", ["gpt-oss:1.5b"]).op_id
    'gpt-oss:1.5b'
    >>> parse_literal("%%globals.job%%").path
    ('job',)
    """
    if not (text.startswith("%%") and text.endswith("%%") and len(text) > 4):
        raise UnresolvedLiteral(text, "a literal looks like %%ops.ID.results.KEY%%")
    body = text[2:-2]
    scope, _, rest = body.partition(".")
    if scope in ("global", "globals") and rest:
        parts = tuple(rest.split("."))
        if len(parts) > 1 and scope == "globals":
            raise UnresolvedLiteral(text, "three-part globals are spelled %%global.…%%")
        if parts[0] in _GLOBAL_KEYS and len(parts) == 1:
            return LiteralRef(text, "global", None, parts)
        if parts[0] == "variables" and len(parts) == 2:
            return LiteralRef(text, "global", None, parts)
        raise UnresolvedLiteral(text, f"unknown global {rest!r}")
    if scope == "ops" and rest:
        for op_id in sorted(op_ids, key=len, reverse=True):
            if rest.startswith(op_id + "."):
                return _op_ref(text, op_id, rest[len(op_id) + 1 :])
        op_id, _, tail = rest.partition(".")
        return _op_ref(text, op_id, tail)
    raise UnresolvedLiteral(text, "a literal starts with %%ops. or %%global.")


def _op_ref(text: str, op_id: str, tail: str) -> LiteralRef:
    path = tuple(tail.split(".")) if tail else ()
    if not path or path[0] not in _OP_FIELDS:
        raise UnresolvedLiteral(text, f"after the op id comes one of {', '.join(_OP_FIELDS)}")
    return LiteralRef(text, "ops", op_id, path)


def resolve_literal(literal: str | LiteralRef, ctx: LiteralContext) -> object:
    """The value of one literal in ``ctx``; raises :class:`UnresolvedLiteral` when it has none.

    >>> resolve_literal("%%global.variables.MODEL%%", LiteralContext(variables={"MODEL": "x"}))
    'x'
    """
    ref = literal if isinstance(literal, LiteralRef) else parse_literal(literal, ctx.ops.keys())
    if ref.scope == "global":
        if ref.path[0] == "variables":
            value: object = ctx.variables.get(ref.path[1])
        else:
            value = getattr(ctx, ref.path[0])
        if value is None or value == "":
            raise UnresolvedLiteral(ref.text, "no such global value")
        return value
    state = ctx.ops.get(ref.op_id or "")
    if state is None:
        raise UnresolvedLiteral(ref.text, f"op {ref.op_id!r} has no state yet (or does not exist)")
    value = _walk(state, ref.path)
    if value is None:
        raise UnresolvedLiteral(ref.text, f"op {ref.op_id!r} has no {'.'.join(ref.path)}")
    return value


def _walk(cur: object, path: tuple[str, ...]) -> object:
    for i, part in enumerate(path):
        if isinstance(cur, Mapping):
            whole = ".".join(path[i:])
            if whole in cur:  # keys may contain dots
                return cur[whole]
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
        if cur is None:
            return None
    return cur


# --- interpolation --------------------------------------------------------------------


@dataclass(frozen=True)
class _Exact:
    value: object


def interpolate_args(args: Mapping[str, Any], ctx: LiteralContext) -> dict[str, Any]:
    """Replace every literal in ``args`` (typing rules of NOSANA-JOB-FORMAT §8).

    A value that is exactly one literal keeps the value's type in typed fields
    (``expose``, ``gpu``, …; JSON-looking strings are parsed); into a string field an
    array is joined with spaces; into an array it is flattened in. Inside a longer string
    the value is substituted as text.

    >>> interpolate_args({"image": "%%global.variables.IMG%%", "gpu": "%%global.variables.G%%"},
    ...                  LiteralContext(variables={"IMG": "busybox", "G": "true"}))
    {'image': 'busybox', 'gpu': True}
    """
    return cast(dict[str, Any], _interp(dict(args), ctx))


def _interp(value: object, ctx: LiteralContext, typed: bool = False) -> object:
    if isinstance(value, str):
        if LITERAL_ANYWHERE.fullmatch(value):
            return _Exact(resolve_literal(value, ctx))
        return LITERAL_ANYWHERE.sub(lambda m: _text(resolve_literal(m.group(0), ctx)), value)
    if isinstance(value, list):
        items: list[object] = []
        for element in value:
            done = _interp(element, ctx)
            if isinstance(done, _Exact):
                items.extend(_tokens(done.value, scalars=typed))
            else:
                items.append(done)
        return items
    if isinstance(value, Mapping):
        obj: dict[str, object] = {}
        for key, element in value.items():
            typed_key = key in TYPED_FIELDS
            done = _interp(element, ctx, typed=typed_key)
            if isinstance(done, _Exact):
                if key in (SPREAD_KEY, PAIRS_KEY):  # parsed by the marker itself
                    done = _single(done.value)
                else:
                    done = _typed(done.value) if typed_key else _text(done.value)
            obj[key] = done
        return obj
    return value


def _jsonish(value: object, *, scalars: bool = False) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text[:1] in ("[", "{") or (scalars and text):
        try:
            return json.loads(text)
        except ValueError:
            return value
    return value


def _tokens(value: object, *, scalars: bool = False) -> list[object]:
    value = _jsonish(value, scalars=scalars)
    if isinstance(value, list):
        return [token for element in value for token in _tokens(element, scalars=scalars)]
    return [] if value is None else [value]


def _single(value: object) -> object:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _typed(value: object) -> object:
    """An exact literal in a typed field: JSON parsed, arrays flattened, one element unwrapped."""
    value = _jsonish(value, scalars=True)
    if not isinstance(value, list):
        return value
    tokens = _tokens(value, scalars=True)
    return tokens[0] if len(tokens) == 1 else tokens


def _text(value: object) -> str:
    return " ".join(_scalar_text(token) for token in _tokens(value))


def _scalar_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


# --- collection markers ----------------------------------------------------------------


def apply_collection_markers(value: Any) -> Any:
    """Apply ``__spread__`` and ``__pairs__`` (after interpolation), as Nosana's node does.

    In an object, ``"__spread__": <JSON object>`` merges its keys in (they win over keys
    written beside it) and ``"__pairs__": [{"key", "value"}]`` adds those keys. In an
    array, ``{"__spread__": <JSON array>, "chunked"?: true}`` splices the array in.

    >>> apply_collection_markers({"A": "1", "__spread__": '{"B": "2"}'})
    {'A': '1', 'B': '2'}
    >>> apply_collection_markers([1, {"__spread__": "[2, 3]"}])
    [1, 2, 3]
    """
    if isinstance(value, list):
        out: list[Any] = []
        for element in value:
            if isinstance(element, dict) and _is_array_marker(element):
                key = SPREAD_KEY if SPREAD_KEY in element else PAIRS_KEY
                raw = element[key]
                if element.get("chunked") is True and isinstance(raw, list):
                    raw = "".join(_scalar_text(piece) for piece in raw)
                out.extend(apply_collection_markers(x) for x in _parse_json(key, raw, list))
            else:
                out.append(apply_collection_markers(element))
        return out
    if isinstance(value, dict):
        base = {
            k: apply_collection_markers(v)
            for k, v in value.items()
            if k not in (SPREAD_KEY, PAIRS_KEY)
        }
        if SPREAD_KEY in value:
            base.update(_parse_json(SPREAD_KEY, value[SPREAD_KEY], dict))
        if PAIRS_KEY in value:
            for item in _parse_json(PAIRS_KEY, value[PAIRS_KEY], list):
                if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                    raise TemplateError("__pairs__ items must be objects with a string 'key'")
                pair_value = item.get("value")
                base[item["key"]] = "" if pair_value is None else pair_value
        return base
    return value


def _is_array_marker(element: dict[str, Any]) -> bool:
    keys = set(element)
    return keys in ({SPREAD_KEY}, {SPREAD_KEY, "chunked"}, {PAIRS_KEY})


def _parse_json(marker: str, raw: object, kind: type[list[Any]] | type[dict[str, Any]]) -> Any:
    parsed = raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise TemplateError(f"{marker} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, kind):
        what = "a JSON array" if kind is list else "a JSON object"
        raise TemplateError(f"{marker} must be {what}, got {type(parsed).__name__}")
    return parsed


def remove_empty_markers(args: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``"__remove-if-empty__"`` elements from array fields; delete arrays left empty.

    >>> remove_empty_markers({"cmd": ["__remove-if-empty__"], "entrypoint": ["sh"]})
    {'entrypoint': ['sh']}
    """
    out: dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, list) and REMOVE_IF_EMPTY in value:
            kept = [element for element in value if element != REMOVE_IF_EMPTY]
            if kept:
                out[key] = kept
        else:
            out[key] = value
    return out


def finalize_env(env: Mapping[str, Any]) -> dict[str, str]:
    """Env values as strings, as the node passes them: strings as-is, the rest as JSON.

    >>> finalize_env({"N": 2, "ON": True, "CFG": {"a": 1}})
    {'N': '2', 'ON': 'true', 'CFG': '{"a":1}'}
    """
    return {
        key: value
        if isinstance(value, str)
        else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        for key, value in env.items()
    }


def resolve_op_args(args: Mapping[str, Any], ctx: LiteralContext) -> dict[str, Any]:
    """The whole pipeline on an op's args: literals, then markers, then empty-array removal.

    Validate the result with ``RunArgs.model_validate`` before running the op.
    """
    resolved = remove_empty_markers(apply_collection_markers(interpolate_args(args, ctx)))
    if isinstance(resolved.get("env"), Mapping):
        resolved["env"] = finalize_env(resolved["env"])
    return resolved
