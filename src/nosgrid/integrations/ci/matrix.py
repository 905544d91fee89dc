"""``strategy.matrix`` expanded the way GitHub does: product, then exclude, then include.

An ``exclude`` entry removes the combinations it matches (all its keys equal, partial
entries allowed). An ``include`` entry extends every combination whose original values it
does not contradict (values it adds may be overwritten by a later include, original ones
never); one that extends none becomes a combination of its own. The result is capped
(GitHub: 256 jobs per matrix), so a typo cannot post thousands of jobs.

>>> expand({"py": ["3.11", "3.12"], "os": ["linux"], "include": [{"py": "3.12", "x": 1}]})
[{'py': '3.11', 'os': 'linux'}, {'py': '3.12', 'os': 'linux', 'x': 1}]
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

MAX_MATRIX_JOBS: Final = 256


class MatrixError(ValueError):
    """A matrix that cannot be expanded (bad shape, or past the limit)."""


def expand(
    matrix: Mapping[str, Any] | None, *, limit: int = MAX_MATRIX_JOBS
) -> list[dict[str, Any]]:
    """Every combination of ``matrix`` (already evaluated: lists, no expressions).

    An absent or empty matrix is one job with no matrix values (``[{}]``).

    >>> expand({"a": [1, 2], "b": ["x", "y"], "exclude": [{"a": 2, "b": "y"}]})
    [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}]
    """
    if not matrix:
        return [{}]
    if not isinstance(matrix, Mapping):
        raise MatrixError("the matrix must be a mapping of lists")
    include = _entries(matrix.get("include"), "include")
    exclude = _entries(matrix.get("exclude"), "exclude")
    axes = [(k, v) for k, v in matrix.items() if k not in ("include", "exclude")]
    total = 1
    for key, values in axes:
        if not isinstance(values, list):
            raise MatrixError(f"matrix.{key} must be a list of values")
        if not values:
            raise MatrixError(f"matrix.{key} is an empty list: the matrix would have no job")
        total *= len(values)
        if total > limit * 64:  # exclude can shrink a product, but not from a huge one
            raise MatrixError(f"the matrix expands to more than {limit} jobs (the limit)")
    combos: list[dict[str, Any]] = [dict(zip([k for k, _ in axes], values, strict=True))
                                    for values in itertools.product(*[v for _, v in axes])]
    if not axes:
        combos = []
    for entry in exclude:
        unknown = [k for k in entry if k not in dict(axes)]
        if unknown:
            raise MatrixError(f"matrix.exclude names {', '.join(map(repr, unknown))}, which "
                              "is not a matrix key")
        combos = [c for c in combos if not _matches(c, entry)]
    original = {k for k, _ in axes}
    extended: list[dict[str, Any]] = [dict(c) for c in combos]
    added: list[dict[str, Any]] = []  # combinations of their own: never extended later
    for entry in include:
        hit = False
        for combo, ext in zip(combos, extended, strict=True):
            if all(_same(combo[k], v) for k, v in entry.items() if k in original):
                ext.update({k: v for k, v in entry.items() if k not in original})
                hit = True
        if not hit:
            added.append(dict(entry))
    extended += added
    if len(extended) > limit:
        raise MatrixError(f"the matrix expands to {len(extended)} jobs; the limit is {limit}")
    if not extended:
        raise MatrixError("the matrix has no combination left after 'exclude'")
    return extended


def _entries(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
        raise MatrixError(f"matrix.{name} must be a list of mappings")
    return [dict(e) for e in value]


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _matches(combo: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    for key, want in entry.items():
        have = combo.get(key)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            if not _matches(have, want):  # a partial object matches the object's keys
                return False
        elif not _same(have, want):
            return False
    return True


def label(values: Mapping[str, Any]) -> str:
    """How GitHub names a matrix job: the values in order, ``(3.11, linux)``.

    >>> label({"py": "3.11", "os": {"name": "deb"}})
    '(3.11, deb)'
    """
    if not values:
        return ""
    return "(" + ", ".join(_short(v) for v in values.values()) + ")"


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(_short(v) for v in value.values())
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ", ".join(_short(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
