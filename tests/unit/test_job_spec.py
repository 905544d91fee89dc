"""The job definition: examples, loading JSON/YAML, errors by path, canonical JSON, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nosgrid.core.errors import InvalidJobSpec
from nosgrid.core.jobs.load import (
    MAX_SPEC_BYTES,
    canonical_json,
    job_definition_schema_text,
    load_job_definition,
    parse_job_definition,
    spec_hash,
)
from nosgrid.core.jobs.meta import NosgridMeta
from nosgrid.core.jobs.spec import JobDefinition, RunArgs, RunOperation

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "jobs").glob("*.*"))
SCHEMA_FILE = ROOT / "schemas" / "job-spec.schema.json"


def job(*ops: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": "0.1", "type": "container", "ops": list(ops), **top}


def run(op_id: str = "a", **args: Any) -> dict[str, Any]:
    return {"type": "container/run", "id": op_id, "args": {"image": "busybox", **args}}


def errors_of(data: dict[str, Any] | str, filename: str | None = None) -> list[str]:
    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(InvalidJobSpec) as info:
        load_job_definition(text, filename=filename)
    return info.value.errors


# --- examples and the schema file --------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    defn = load_job_definition(path.read_bytes(), filename=path.name)
    assert defn.ops


def test_examples_cover_yaml_and_the_advertised_features() -> None:
    assert any(p.suffix in (".yaml", ".yml") for p in EXAMPLES)
    defs = [load_job_definition(p.read_bytes(), filename=p.name) for p in EXAMPLES]
    run_args = [op.args for d in defs for op in d.ops if isinstance(op, RunOperation)]
    assert any(a.expose is not None for a in run_args)
    assert any(a.resources for a in run_args)
    assert any(op.depends_on for d in defs for op in d.ops)
    assert any("%%ops." in json.dumps(a.model_dump(exclude_unset=True)) for a in run_args)


def test_schema_file_matches_the_model() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == job_definition_schema_text(), (
        "schemas/job-spec.schema.json is out of date; regenerate it with "
        "`.venv/bin/nosgrid job schema -o schemas/job-spec.schema.json`"
    )


# --- loading --------------------------------------------------------------------------------


def test_yaml_and_json_give_the_same_definition() -> None:
    data = job(run(cmd=["echo", "hi"], env={"A": "1"}), meta={"trigger": "cli"})
    from_json = load_job_definition(json.dumps(data))
    from_yaml = load_job_definition(yaml.safe_dump(data), filename="job.yml")
    assert from_json == from_yaml
    assert spec_hash(from_json) == spec_hash(from_yaml)


def test_yaml_timestamps_stay_strings() -> None:
    defn = load_job_definition("version: 2024-01-01\ntype: container\nops: []\n")
    assert defn.version == "2024-01-01"


@pytest.mark.parametrize(
    ("text", "filename", "expected"),
    [
        ('{"version": "0.1",', None, "invalid JSON at line 1, column 19: Expecting property name"),
        ('{"a": 1, "a": 2}', None, "invalid JSON: duplicate key 'a'"),
        ('{"a": NaN}', None, "invalid JSON: NaN is not a JSON number"),
        ("ops: [\n", "x.yaml", "invalid YAML at line 2, column 1"),
        ("a: 1\na: 2\n", "x.yaml", "invalid YAML at line 2, column 1: found duplicate key 'a'"),
        ("- 1\n", None, "the definition must be an object, got an array"),
        ("", "x.yaml", "the definition must be an object, got null"),
    ],
)
def test_syntax_errors_are_one_line_messages(
    text: str, filename: str | None, expected: str
) -> None:
    (message,) = errors_of(text, filename)
    assert message.startswith(expected)


def test_bytes_must_be_utf8() -> None:
    with pytest.raises(InvalidJobSpec, match="not UTF-8"):
        load_job_definition(b"\xff\xfe{}")


def test_size_limit_on_text_and_on_yaml_alias_expansion() -> None:
    big = json.dumps(job(run(env={"X": "a" * MAX_SPEC_BYTES})))
    assert "the limit is 262144" in errors_of(big)[0]
    bomb = "a: &a ['xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']\n"
    for i in range(1, 12):
        prev = "a" if i == 1 else f"b{i - 1}"
        bomb += f"b{i}: &b{i} [*{prev}, *{prev}, *{prev}]\n"
    assert "larger than 262144 bytes" in errors_of(bomb, "bomb.yaml")[0]


@pytest.mark.parametrize(
    ("text", "filename"),
    [
        ('{"meta": ' + "[" * 5_000 + "]" * 5_000 + "}", None),
        ("meta: " + "[" * 5_000 + "]" * 5_000, "x.yaml"),
        (
            '{"version": "1", "type": "container", "ops": [], "meta": {"x": '
            + "[" * 70
            + "]" * 70
            + "}}",
            None,
        ),
    ],
)
def test_deep_nesting_is_an_error_not_a_crash(text: str, filename: str | None) -> None:
    assert errors_of(text, filename) == ["the definition is nested more than 64 levels deep"]


def test_every_error_is_reported_at_once() -> None:
    data = job(run("a", cmd=5, bogus=1), run("b", image="Not Valid"))
    data["extra"] = True
    assert errors_of(data) == [
        "ops[0].args.cmd: expected a string or an array, got a number",
        "ops[0].args.bogus: unknown field (not allowed here)",
        "ops[1].args.image: 'Not Valid' is not a valid image reference "
        "(e.g. 'docker.io/library/ubuntu:22.04'; repository names are lowercase)",
        "extra: unknown field (not allowed here)",
    ]


def test_null_is_refused_for_optional_keys_but_meta_is_open() -> None:
    assert errors_of(job(run(gpu=None))) == [
        "ops[0].args.gpu: null is not allowed here; leave the key out"
    ]
    defn = load_job_definition(json.dumps(job(meta={"anything": None, "n": [1, {"x": 2}]})))
    assert defn.meta is not None and defn.meta.model_extra == {"anything": None, "n": [1, {"x": 2}]}


def test_parse_job_definition_takes_parsed_json() -> None:
    assert parse_job_definition(job()).ops == []
    with pytest.raises(InvalidJobSpec, match="must be an object"):
        parse_job_definition([1])


# --- the model ------------------------------------------------------------------------------


def test_cmd_string_runs_under_sh_and_array_verbatim() -> None:
    assert RunArgs(image="busybox", cmd="echo $A").command_argv() == ["/bin/sh", "-c", "echo $A"]
    assert RunArgs(image="busybox", cmd=["echo", "$A"]).command_argv() == ["echo", "$A"]
    assert RunArgs(image="busybox").command_argv() is None
    assert RunArgs(image="busybox", entrypoint="/bin/sh -c").entrypoint_argv() == ["/bin/sh -c"]
    assert RunArgs(image="busybox", aliases="a, b,").alias_list() == ["a", "b"]


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "localhost/nosgrid-busybox:test",
        "localhost:5000/team/app:v1.2",
        "ghcr.io/org/repo/sub:latest",
        "docker.io/library/ubuntu@sha256:" + "a" * 64,
        "ollama/ollama:%%global.variables.TAG%%",
        "%%global.variables.IMAGE%%",
    ],
)
def test_valid_image_references(image: str) -> None:
    load_job_definition(json.dumps(job(run(image=image))))


@pytest.mark.parametrize("image", ["", "Ubuntu", "ubuntu:", "a//b", "-x", "x:tag with space"])
def test_invalid_image_references(image: str) -> None:
    (message,) = errors_of(job(run(image=image)))
    assert message.startswith("ops[0].args.image: ")


def test_nosgrid_meta_terms() -> None:
    meta = NosgridMeta.model_validate({"max_price": "1.5", "timeout": 60})
    assert meta.max_price_base_units == 1_500_000
    assert meta.verification == "none" and meta.network == "none" and meta.replicas == 1
    assert meta.outputs == ["/outputs"]
    assert NosgridMeta(max_price=42).max_price_base_units == 42


@pytest.mark.parametrize(
    ("nosgrid", "expected"),
    [
        ({"timeout": 0}, "meta.nosgrid.timeout: must be greater than or equal to 1"),
        ({"timeout": 7 * 86400 + 1}, "meta.nosgrid.timeout: must be less than or equal to 604800"),
        ({"max_price": "1.1234567"}, "meta.nosgrid.max_price: amount '1.1234567' has more than"),
        ({"max_price": 1.5}, "meta.nosgrid.max_price: expected a string or an integer, got a"),
        ({"verification": "maybe"}, "meta.nosgrid.verification: expected 'deterministic'"),
        ({"abs_eps": 0.1}, "meta.nosgrid: abs_eps and rel_eps are only allowed"),
        ({"replicas": 0}, "meta.nosgrid.replicas: must be greater than or equal to 1"),
        ({"replicas": 6, "verification": "deterministic"},
         "meta.nosgrid.replicas: must be less than or equal to 5"),
        ({"replicas": 2}, "meta.nosgrid: replicas > 1 needs verification 'deterministic' or"),
        ({"network": "host"},
         "meta.nosgrid.network: expected 'none', 'job' or 'egress', got 'host'"),
        ({"inputs": [{"sha256": "xy", "path": "/in"}]}, "meta.nosgrid.inputs[0].sha256: "),
        ({"outputs": ["relative"]}, "meta.nosgrid.outputs[0]: "),
        ({"outputs": ["/a/../b"]}, "meta.nosgrid.outputs: output path '/a/../b' must be"),
        ({"colour": "blue"}, "meta.nosgrid.colour: unknown field (not allowed here)"),
    ],
)
def test_invalid_nosgrid_meta(nosgrid: dict[str, Any], expected: str) -> None:
    (message,) = errors_of(job(meta={"nosgrid": nosgrid}))
    assert message.startswith(expected), message


# --- canonical JSON and the content address --------------------------------------------------

_names = st.text("abcdefghijklmnopqrstuvwxyz-_", min_size=1, max_size=8)
# NULs and lone surrogates are refused (core/text.py; a test of their own)
_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
                max_size=12)
_args = st.fixed_dictionaries(
    {"image": st.sampled_from(["busybox", "localhost/nosgrid-busybox:test", "ollama/ollama:0.6"])},
    optional={
        "cmd": st.one_of(_text, st.lists(_text, max_size=3)),
        "env": st.dictionaries(_names, _text, max_size=3),
        "gpu": st.booleans(),
        "expose": st.one_of(
            st.integers(1, 65535), st.lists(st.integers(1, 65535), max_size=3, unique=True)
        ),
        "required_vram": st.one_of(st.integers(0, 80), st.floats(0, 80, allow_nan=False)),
    },
)


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(_names, min_size=0, max_size=4, unique=True))
    ops = [{"type": "container/run", "id": i, "args": draw(_args)} for i in ids]
    top: dict[str, Any] = {}
    if draw(st.booleans()):
        top["meta"] = {"trigger": draw(_text), "nosgrid": {"timeout": draw(st.integers(1, 600))}}
    if draw(st.booleans()):
        top["global"] = {"env": draw(st.dictionaries(_names, _text, max_size=2))}
    return job(*ops, version=draw(_text), **top)


@settings(max_examples=60, deadline=None)
@given(definitions())
def test_canonical_json_round_trips_and_the_hash_is_stable(data: dict[str, Any]) -> None:
    defn = load_job_definition(json.dumps(data))
    canon = canonical_json(defn)
    again = load_job_definition(canon)
    assert again == defn
    assert canonical_json(again) == canon
    assert spec_hash(again) == spec_hash(defn)
    # key order and whitespace do not change the address; what was written is kept
    shuffled = json.dumps(dict(reversed(list(data.items()))), indent=3)
    assert spec_hash(load_job_definition(shuffled)) == spec_hash(defn)
    assert json.loads(canon) == data


def test_defaults_left_out_stay_out_of_the_hash() -> None:
    plain = load_job_definition(json.dumps(job(meta={"nosgrid": {"timeout": 5}})))
    explicit = load_job_definition(
        json.dumps(job(meta={"nosgrid": {"timeout": 5, "verification": "none"}}))
    )
    assert spec_hash(plain) != spec_hash(explicit)
    assert b"verification" not in canonical_json(plain)


def test_models_are_immutable() -> None:
    defn = JobDefinition.model_validate(job(run()))
    with pytest.raises(ValueError):
        defn.ops[0].args.image = "other"  # type: ignore[misc]
