"""GitHub Actions expressions: operators, coercion, functions, contexts, templates."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.integrations.ci.expressions import (
    Evaluator,
    ExpressionError,
    condition_expression,
    expressions_in,
    parse,
    stringify,
    truthy,
)

CTX: dict[str, Any] = {
    "github": {"ref": "refs/heads/main", "event_name": "push", "sha": "abc123"},
    "env": {"CI": "true", "EMPTY": ""},
    "matrix": {"py": "3.11", "os": "linux", "n": 2},
    "needs": {"a": {"result": "success", "outputs": {"v": "1"}},
              "b": {"result": "failure", "outputs": {}}},
    "steps": {"s1": {"outputs": {"x": "hello"}, "outcome": "success"}},
}


def ev(**status: bool) -> Evaluator:
    return Evaluator(CTX, status=(lambda name: status.get(name, False)) if status else None)


@pytest.mark.parametrize(("expr", "want"), [
    ("github.ref == 'refs/heads/main'", True),
    ("github.ref == 'REFS/HEADS/MAIN'", True),  # strings compare without case
    ("github.ref != 'refs/heads/dev'", True),
    ("matrix.n == '2'", True),  # different types compare as numbers
    ("matrix.n == 2.0", True),
    ("null == 0", True),
    ("true == 1", True),
    ("'' == 0", True),
    ("'abc' == 0", False),  # NaN equals nothing
    ("matrix.n > 1 && matrix.n <= 2", True),
    ("!env.EMPTY", True),
    ("!!env.CI", True),
    ("env.MISSING || 'default'", "default"),
    ("env.CI && 'yes'", "yes"),
    ("env.EMPTY && 'yes'", ""),
    ("startsWith(github.ref, 'refs/heads/')", True),
    ("endsWith(github.ref, '/MAIN')", True),
    ("contains('Hello world', 'WORLD')", True),
    ("contains(fromJSON('[\"a\",\"b\"]'), 'b')", True),
    ("contains(fromJSON('[1,2]'), '2')", True),
    ("format('{0}-{1}-{{x}}', 'a', matrix.n)", "a-2-{x}"),
    ("join(fromJSON('[1,2,3]'), '+')", "1+2+3"),
    ("join(fromJSON('[\"a\",\"b\"]'))", "a,b"),
    ("fromJSON('{\"k\": [1, {\"z\": true}]}').k[1].z", True),
    ("needs.a.outputs.v", "1"),
    ("needs.*.result", ["success", "failure"]),
    ("contains(needs.*.result, 'failure')", True),
    ("steps.s1.outputs.x", "hello"),
    ("steps['s1'].outputs['x']", "hello"),
    ("matrix.missing", None),
    ("0x10 == 16", True),
    ("1.5e1", 15.0),
    ("'it''s'", "it's"),
    ("(1 == 1) && (2 == 3)", False),
    ("MATRIX.PY", "3.11"),  # contexts and properties ignore case
])
def test_expressions(expr: str, want: Any) -> None:
    assert ev().evaluate(expr) == want


def test_to_json_round_trips() -> None:
    text = ev().evaluate("toJSON(matrix)")
    assert json.loads(text) == CTX["matrix"]


def test_an_unknown_context_is_an_empty_string_with_a_warning() -> None:
    e = ev()
    assert e.evaluate("vars_typo.thing") is None
    assert e.evaluate("nothere") == ""
    assert any("nothere" in w for w in e.warnings)


@pytest.mark.parametrize("bad", ["a ==", "(a", "'open", "a.", "f(,)", "a ! b", "", "a[1"])
def test_bad_expressions_say_where(bad: str) -> None:
    with pytest.raises(ExpressionError):
        parse(bad)


def test_unknown_function_and_arity_errors() -> None:
    with pytest.raises(ExpressionError, match="unknown function"):
        ev().evaluate("nope(1)")
    with pytest.raises(ExpressionError, match="takes 2"):
        ev().evaluate("startsWith('a')")
    with pytest.raises(ExpressionError, match="has no argument"):
        ev().evaluate("format('{1}', 'a')")
    with pytest.raises(ExpressionError, match="not JSON"):
        ev().evaluate("fromJSON('{')")


def test_if_implies_success_unless_a_status_function_is_named() -> None:
    assert condition_expression(None) == "success()"
    assert condition_expression("github.ref == 'x'") == "success() && (github.ref == 'x')"
    assert condition_expression("${{ failure() }}") == "failure()"
    assert condition_expression("always() && env.CI") == "always() && env.CI"
    failed = ev(failure=True)
    assert failed.condition(None) is False
    assert failed.condition("failure()") is True
    assert failed.condition("always()") is True
    assert failed.condition("${{ !cancelled() }}") is True
    ok = ev(success=True)
    assert ok.condition("env.CI == 'true'") is True
    assert ok.condition("env.CI == 'false'") is False


def test_templates_interpolate_and_keep_quotes() -> None:
    e = ev()
    assert e.interpolate("py${{ matrix.py }}-${{ matrix.os }}") == "py3.11-linux"
    assert e.interpolate("${{ '}}' }}") == "}}"
    assert e.value("${{ matrix.n }}") == 2  # a whole-string expression keeps its type
    assert e.value(" ${{ fromJSON('[1]') }} ") == [1]
    assert e.value({"k": ["${{ matrix.py }}"]}) == {"k": ["3.11"]}
    assert list(expressions_in("a ${{ x }} b ${{ y }}")) == [(2, 10, "x"), (13, 21, "y")]
    with pytest.raises(ExpressionError, match="never closed"):
        e.interpolate("${{ matrix.py ")


@given(st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                 st.floats(allow_nan=True, allow_infinity=False), st.text(max_size=20)))
def test_truthiness_matches_github(value: Any) -> None:
    falsy = value is None or value is False or value == "" or (
        isinstance(value, int | float) and not isinstance(value, bool)
        and (value == 0 or math.isnan(value)))
    assert truthy(value) is (not falsy)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_string_literal_round_trips(text: str) -> None:
    literal = "'" + text.replace("'", "''") + "'"
    assert Evaluator({}).evaluate(literal) == text


@given(st.integers(-10**9, 10**9), st.integers(-10**9, 10**9))
def test_comparisons_agree_with_python_on_numbers(a: int, b: int) -> None:
    e = Evaluator({"v": {"a": a, "b": b}})
    assert e.evaluate("v.a < v.b") is (a < b)
    assert e.evaluate("v.a == v.b") is (a == b)
    assert e.evaluate(f"v.a == '{a}'") is True


@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10))
def test_from_json_of_to_json_is_identity(value: Any) -> None:
    e = Evaluator({"x": {"v": value}})
    assert e.evaluate("fromJSON(toJSON(x.v))") == value


def test_stringify_as_github_interpolates() -> None:
    assert [stringify(v) for v in (None, False, 1, 1.0, 0.5, "s", {}, [])] == \
        ["", "false", "1", "1", "0.5", "s", "Object", "Array"]
