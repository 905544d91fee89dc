"""Literals, collection markers and results extraction (NOSANA-JOB-FORMAT §6, §8)."""

from __future__ import annotations

from typing import Any

import pytest

from nosgrid.core.jobs.literals import (
    LiteralContext,
    TemplateError,
    UnresolvedLiteral,
    apply_collection_markers,
    find_literals,
    interpolate_args,
    parse_literal,
    resolve_literal,
    resolve_op_args,
)
from nosgrid.core.jobs.results import extract_results, js_regex_to_python
from nosgrid.core.jobs.spec import ResultFilter, RunArgs

CTX = LiteralContext(
    job="JOB1",
    project="PRJ",
    host="node.example",
    frps_address="frp.example",
    variables={"MODEL": "llama3", "EMPTY": "", "CFG": '{"A": "1", "B": "2"}'},
    ops={
        "probe": {
            "host": "flow-0",
            "results": {
                "port": ["8080"],
                "ports": ["[8000, 9000]"],
                "flags": ["--a", "--b"],
                "env": ['{"X": "y"}'],
                "pairs": ['[{"key": "K", "value": "v"}, {"key": "E"}]'],
                "res": ['[{"type": "HF", "repo": "r", "target": "/m"}]'],
                "none": [],
                "dotted.key": "d",
            },
            "endpoint": {"8080": "https://abc.node.example"},
        },
        "gpt-oss:1.5b": {"host": "flow-1"},
    },
)


def test_find_and_parse() -> None:
    assert find_literals("a %%ops.x.host%% b %%global.job%%") == [
        "%%ops.x.host%%",
        "%%global.job%%",
    ]
    ref = parse_literal("%%ops.gpt-oss:1.5b.results.k.0%%", ["gpt-oss:1.5b", "gpt-oss"])
    assert (ref.op_id, ref.path) == ("gpt-oss:1.5b", ("results", "k", "0"))
    assert parse_literal("%%global.variables.MODEL%%").path == ("variables", "MODEL")
    assert parse_literal("%%globals.host%%").scope == "global"


@pytest.mark.parametrize(
    "text",
    ["%%globals.variables.X%%", "%%global.nothing%%", "%%ops.x%%", "%%ops.x.status%%", "%%foo%%"],
)
def test_malformed_literals(text: str) -> None:
    with pytest.raises(UnresolvedLiteral) as info:
        parse_literal(text)
    assert info.value.literal == text


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("%%global.job%%", "JOB1"),
        ("%%globals.project%%", "PRJ"),
        ("%%global.host%%", "node.example"),
        ("%%global.frps_address%%", "frp.example"),
        ("%%global.variables.MODEL%%", "llama3"),
        ("%%ops.probe.host%%", "flow-0"),
        ("%%ops.gpt-oss:1.5b.host%%", "flow-1"),
        ("%%ops.probe.results.flags%%", ["--a", "--b"]),
        ("%%ops.probe.results.flags.1%%", "--b"),
        ("%%ops.probe.results.dotted.key%%", "d"),
        ("%%ops.probe.endpoint.8080%%", "https://abc.node.example"),
    ],
)
def test_resolve(literal: str, value: object) -> None:
    assert resolve_literal(literal, CTX) == value


@pytest.mark.parametrize(
    "literal",
    [
        "%%global.variables.NOPE%%",
        "%%global.variables.EMPTY%%",
        "%%ops.ghost.host%%",
        "%%ops.probe.results.missing%%",
        "%%ops.probe.deployment_endpoint%%",
    ],
)
def test_unresolvable_literal_is_a_typed_error_naming_it(literal: str) -> None:
    with pytest.raises(UnresolvedLiteral) as info:
        interpolate_args({"cmd": f"run {literal}"}, CTX)
    assert info.value.literal == literal
    assert info.value.code == "unresolved_literal"
    assert literal in info.value.message


def test_typing_rules() -> None:
    args: dict[str, Any] = {
        "image": "ollama/ollama:%%global.variables.MODEL%%",  # inside a string: text
        "cmd": "%%ops.probe.results.flags%%",  # string field, array value: joined
        "entrypoint": ["sh", "%%ops.probe.results.flags%%", "-c"],  # array field: flattened
        "expose": "%%ops.probe.results.ports%%",  # typed field: JSON parsed, type kept
        "gpu": "%%global.variables.CFG%%",
        "env": {"URL": "http://%%ops.probe.host%%:%%ops.probe.results.port%%/"},
        "work_dir": "%%ops.probe.results.port%%",
    }
    out = interpolate_args(args, CTX)
    assert out["image"] == "ollama/ollama:llama3"
    assert out["cmd"] == "--a --b"
    assert out["entrypoint"] == ["sh", "--a", "--b", "-c"]
    assert out["expose"] == [8000, 9000]
    assert out["gpu"] == {"A": "1", "B": "2"}
    assert out["env"] == {"URL": "http://flow-0:8080/"}
    assert out["work_dir"] == "8080"  # a one-element array gives that element


def test_exact_literal_in_typed_field_keeps_number() -> None:
    out = interpolate_args({"expose": "%%ops.probe.results.port%%", "gpu": "true"}, CTX)
    assert out == {"expose": 8080, "gpu": "true"}
    out = interpolate_args({"expose": ["%%ops.probe.results.port%%", 7000]}, CTX)
    assert out == {"expose": [8080, 7000]}
    out = interpolate_args({"expose": ["%%ops.probe.results.ports.0%%", 7000]}, CTX)
    assert out == {"expose": [8000, 9000, 7000]}


def test_collection_markers_after_interpolation() -> None:
    args = {
        "image": "busybox",
        "env": {
            "__spread__": "%%ops.probe.results.env%%",
            "__pairs__": "%%ops.probe.results.pairs%%",
            "X": "written",
            "N": "1",
        },
        "cmd": ["serve", "__remove-if-empty__"],
        "entrypoint": ["__remove-if-empty__"],
        "resources": ["__remove-if-empty__", {"__spread__": "%%ops.probe.results.res%%"}],
        "expose": [{"__spread__": "%%ops.probe.results.ports%%"}],
    }
    out = resolve_op_args(args, CTX)
    assert out["env"] == {"X": "y", "N": "1", "K": "v", "E": ""}  # spread wins, as on the node
    assert out["cmd"] == ["serve"]
    assert "entrypoint" not in out
    assert out["resources"] == [{"type": "HF", "repo": "r", "target": "/m"}]
    assert out["expose"] == [8000, 9000]
    resolved = RunArgs.model_validate(out)
    assert resolved.command_argv() == ["serve"]


def test_chunked_spread_and_env_values_become_strings() -> None:
    chunked = [{"__spread__": ['["a", ', '"b"]'], "chunked": True}, "c"]
    assert apply_collection_markers(chunked) == ["a", "b", "c"]
    out = resolve_op_args({"env": {"__spread__": '{"N": 2, "O": {"k": true}}'}}, CTX)
    assert out["env"] == {"N": "2", "O": '{"k":true}'}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"__spread__": "not json"}, "__spread__ is not valid JSON"),
        ({"__spread__": "[1]"}, "__spread__ must be a JSON object"),
        ([{"__spread__": "{}"}], "__spread__ must be a JSON array"),
        ({"__pairs__": "[1]"}, "__pairs__ items must be objects"),
    ],
)
def test_bad_markers_are_template_errors(value: object, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        apply_collection_markers(value)


# --- results ----------------------------------------------------------------------------------


def test_results_match_output_is_full_match_plus_groups() -> None:
    logs = [
        ("stdout", 'x "users_1_tokens_per_second_mean":12.5 y'),
        ("stderr", "cmd: serve --port 80"),
        ("stdout", ""),
        ("stdout", '"users_1_tokens_per_second_mean":-3'),
    ]
    results = {
        "tps": '"users_1_tokens_per_second_mean":(-?[\\d.]+)',
        "cmd": "(?<=cmd: ).*",
        "only_out": ResultFilter.model_validate({"regex": "cmd", "logType": ["stdout"]}),
        "opt": "(a)?x",
    }
    found = extract_results(results, logs)
    assert found["tps"] == [
        '"users_1_tokens_per_second_mean":12.5',
        "12.5",
        '"users_1_tokens_per_second_mean":-3',
        "-3",
    ]
    assert found["cmd"] == ["serve --port 80"]
    assert found["only_out"] == []
    assert found["opt"] == ["x", None]


def test_results_star_invalid_regex_and_no_logs() -> None:
    found = extract_results({"all": "*", "bad": "(?<=a+)b"}, [("stdout", "hello")])
    assert found["all"] == [""]
    assert isinstance(found["bad"], str) and found["bad"].startswith("SyntaxError")
    assert extract_results({"all": "*"}, []) == {}


def test_js_regex_translation() -> None:
    assert js_regex_to_python(r"(?<n>\d+)-\k<n>") == r"(?P<n>\d+)-(?P=n)"
    assert js_regex_to_python(r"(?<=a)(?<!b)") == r"(?<=a)(?<!b)"
    found = extract_results({"n": r"(?<n>\d+)-\k<n>"}, [("stdout", "7-7")])
    assert found["n"] == ["7-7", "7"]
