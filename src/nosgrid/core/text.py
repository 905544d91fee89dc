"""Text nothing downstream can carry: lone surrogates anywhere, NULs where they cannot go.

JSON may escape any UTF-16 code unit, so ``"\\ud800"`` parses into a Python ``str`` holding
a lone surrogate, which no UTF-8 encoder accepts: not the store, not a hash, not a
response. A NUL cannot reach a process's argv or environment, nor a PostgreSQL text
column. Requests and job definitions are checked with these helpers before anything is
encoded, so such text is refused with a clear error instead of failing deep inside.

Messages never echo the bad character itself (that would fail to encode in turn).

>>> bad_text({"meta": {"description": "ok\\ud800"}, "ops": [{"cmd": "a\\x00"}]})
[('meta.description', 'holds a lone surrogate (U+D800 at character 2), which is not Unicode text'), ('ops[0].cmd', 'holds a NUL character (at character 1)')]
>>> bad_text({"env": {"\\udfff": "x"}}, nul=False)
[('env', 'a key holds a lone surrogate (U+DFFF at character 0), which is not Unicode text')]
"""  # noqa: E501

from __future__ import annotations

import json
import re
from typing import Final

#: at most this many problems are reported per value (the first ones, in document order)
MAX_PROBLEMS: Final = 20
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_IDENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-/]*$")
#: what a lone surrogate looks like in JSON bytes: a ``\\uD8xx``-``\\uDFxx`` escape, or the
#: three bytes a surrogate-passing encoder writes (``json.loads`` of bytes decodes those)
SURROGATE_IN_JSON: Final = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def text_problem(text: str, *, nul: bool = True) -> str | None:
    """Why ``text`` cannot be carried, or None; ``nul`` also refuses NUL characters.

    >>> text_problem("fine"), text_problem("a\\x00", nul=False)
    (None, None)
    >>> text_problem("\\ud83d")
    'holds a lone surrogate (U+D83D at character 0), which is not Unicode text'
    """
    found = _SURROGATE.search(text)
    if found is not None:
        return (f"holds a lone surrogate (U+{ord(found.group()):04X} at character "
                f"{found.start()}), which is not Unicode text")
    if nul and "\x00" in text:
        return f"holds a NUL character (at character {text.index(chr(0))})"
    return None


def bad_text(tree: object, *, nul: bool = True) -> list[tuple[str, str]]:
    """Every string (value or key) of a parsed JSON value that :func:`text_problem`
    refuses, as ``(path, problem)`` in document order; paths like ``ops[0].args.env.A``."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, object]] = [("", tree)]
    while stack and len(found) < MAX_PROBLEMS:
        path, node = stack.pop()
        if isinstance(node, str):
            problem = text_problem(node, nul=nul)
            if problem is not None:
                found.append((path, problem))
        elif isinstance(node, dict):
            children = []
            for key, value in node.items():
                problem = text_problem(key, nul=nul) if isinstance(key, str) else None
                if problem is not None:
                    found.append((path, f"a key {problem}"))
                    continue
                children.append((join(path, str(key)), value))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(f"{path}[{i}]", v) for i, v in enumerate(node)]))
    return found


def join(path: str, key: str) -> str:
    """``path.key``, the key quoted (as JSON, ASCII only) unless it is a plain identifier.

    >>> join("", "meta"), join("meta", "a b"), join("ops[0]", "id")
    ('meta', 'meta."a b"', 'ops[0].id')
    """
    part = key if _IDENT.match(key) else json.dumps(key)
    return f"{path}.{part}" if path else part


def may_hold_surrogates(body: bytes) -> bool:
    """A quick look at JSON bytes: False means no string in them can hold a lone surrogate.

    True only means "parse and look" (a valid escaped pair such as an emoji matches too).

    >>> may_hold_surrogates(b'{"a": "\\\\ud800"}'), may_hold_surrogates(b'{"a": "b"}')
    (True, False)
    """
    return SURROGATE_IN_JSON.search(body) is not None
