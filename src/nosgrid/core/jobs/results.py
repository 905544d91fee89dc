"""``results``: values pulled out of an op's log lines by regex, as Nosana's node does it.

Each log line (with text) is matched with the result's regex, without flags; the match
output, the full match and then every capture group, is appended to that result's
list. ``"*"`` means ``/*``. A regex that does not compile stores its error text instead.
Patterns are JavaScript regexes; the common differences from Python's ``re`` (named
groups, ``\\k<name>``, ``[^]``) are translated.

>>> extract_results({"loss": r"loss=([\\d.]+)"}, [("stdout", "step 1 loss=0.5"), ("stdout", "ok")])
{'loss': ['loss=0.5', '0.5']}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from nosgrid.core.jobs.spec import ResultFilter

LOG_TYPES: Final = ("stdin", "stdout", "stderr", "nodeerr")

_NAMED_GROUP: Final = re.compile(r"(?<!\\)\(\?<(?=[A-Za-z_])")
_BACKREF: Final = re.compile(r"\\k<([A-Za-z_][A-Za-z0-9_]*)>")

ResultValue = list[str | None] | str


def js_regex_to_python(pattern: str) -> str:
    """Translate the JavaScript-only bits of a regex into Python ``re`` syntax.

    >>> js_regex_to_python(r"(?<port>\\d+) \\k<port> [^]")
    '(?P<port>\\\\d+) (?P=port) [\\\\s\\\\S]'
    """
    if pattern == "*":
        return "/*"
    out = _NAMED_GROUP.sub("(?P<", pattern)
    out = _BACKREF.sub(r"(?P=\1)", out)
    return out.replace("[^]", r"[\s\S]")


def extract_results(
    results: Mapping[str, str | ResultFilter], logs: Iterable[tuple[str, str]]
) -> dict[str, ResultValue]:
    """Evaluate an op's ``results`` over its logs, given as ``(log type, text)`` pairs.

    A string filter scans every log type; an object filter only its ``logType``s. The
    value of a result is the list of match outputs (None for a group that did not take
    part) or, when its regex is invalid, the error text. No logs give ``{}``.

    >>> extract_results({"bad": "("}, [("stdout", "x")])["bad"][:34]
    'SyntaxError: Invalid regular expre'
    """
    lines = list(logs)
    if not results or not lines:
        return {}
    compiled: dict[str, re.Pattern[str] | str] = {}
    scopes: dict[str, frozenset[str]] = {}
    for name, spec in results.items():
        regex = spec if isinstance(spec, str) else spec.regex
        scopes[name] = frozenset(LOG_TYPES if isinstance(spec, str) else spec.log_type)
        try:
            compiled[name] = re.compile(js_regex_to_python(regex))
        except re.error as exc:
            compiled[name] = f"SyntaxError: Invalid regular expression: /{regex}/: {exc}"
    found: dict[str, ResultValue] = {name: [] for name in results}
    for log_type, text in lines:
        if not text:
            continue
        for name, pattern in compiled.items():
            if log_type not in scopes[name]:
                continue
            if isinstance(pattern, str):
                found[name] = pattern
                continue
            match = pattern.search(text)
            value = found[name]
            if match is not None and isinstance(value, list):
                value.append(match.group(0))
                value.extend(match.groups())
    return found
