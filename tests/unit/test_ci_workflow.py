"""Workflow files: GitHub's YAML, errors with file/line/field, matrix, needs, markets, plan."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nosgrid.cli.main import main
from nosgrid.integrations.ci.errors import InvalidWorkflow
from nosgrid.integrations.ci.matrix import MatrixError, expand, label
from nosgrid.integrations.ci.model import parse_workflow, workflow_schema_text
from nosgrid.integrations.ci.plan import (
    JobContexts,
    action_kind,
    check_workflow,
    clamp_timeout,
    instances,
    job_levels,
    market_for,
)
from nosgrid.integrations.ci.source import load_source

ROOT = Path(__file__).resolve().parents[2]


def load(text: str, name: str = "ci.yml") -> Any:
    src = load_source(text, name)
    wf = parse_workflow(src)
    return src, wf, check_workflow(wf, src)


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidWorkflow) as info:
        load(text)
    return info.value.errors


def test_on_is_a_key_and_only_true_false_are_booleans() -> None:
    src = load_source("on: [push]\nenv:\n  A: yes\n  B: off\n  C: true\njobs: {}\n", "x.yml")
    assert src.data["on"] == ["push"]
    assert src.data["env"] == {"A": "yes", "B": "off", "C": True}
    assert load_source("d: 2026-01-01\n", "x.yml").data["d"] == "2026-01-01"


def test_yaml_errors_and_duplicates_name_the_line() -> None:
    assert errors_of("jobs:\n  a: [\n") [0].startswith("ci.yml:3: invalid YAML")
    errs = errors_of("jobs:\n  a:\n    steps: []\n  a:\n    steps: []\n")
    assert errs == ["ci.yml:4: jobs.a: duplicate key"]


def test_unknown_keys_missing_fields_and_bad_steps_give_file_line_field() -> None:
    errs = errors_of("""\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    runs_on: typo
    steps:
      - run: make
        bogus: 1
      - name: neither
      - run: x
        uses: actions/checkout@v4
""")
    assert "ci.yml:5: jobs.build.runs_on: unknown key (not part of the workflow syntax " \
        "nosgrid supports)" in errs
    assert "ci.yml:8: jobs.build.steps[0].bogus: unknown key (not part of the workflow " \
        "syntax nosgrid supports)" in errs
    assert "ci.yml:9: jobs.build.steps[1]: a step needs exactly one of 'run' or 'uses'" in errs
    assert "ci.yml:10: jobs.build.steps[2]: a step needs exactly one of 'run' or 'uses'" in errs
    assert errors_of("on: push\n") == ["ci.yml:1: jobs: field required"]


def test_services_and_reusable_workflows_are_refused_by_name() -> None:
    errs = errors_of("jobs:\n  a:\n    uses: o/r/.github/workflows/x.yml@v1\n"
                     "  b:\n    services: {db: {image: pg}}\n    steps: [{run: x}]\n")
    assert errs[0].startswith("ci.yml:3: jobs.a.uses: reusable workflows are not supported")
    assert errs[1].startswith("ci.yml:5: jobs.b.services: service containers")


def test_an_unsupported_action_names_the_step_and_the_action() -> None:
    errs = errors_of("jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n"
                     "      - name: Node\n        uses: actions/setup-node@v4\n")
    assert len(errs) == 1
    assert errs[0].startswith("ci.yml:6: jobs.a.steps[1].uses: step 'Node' uses "
                              "'actions/setup-node@v4', which nosgrid ci cannot run")


def test_skipped_actions_are_warnings() -> None:
    _, _, warnings = load("jobs:\n  a:\n    steps:\n      - uses: codecov/codecov-action@v4\n")
    assert warnings and "skipped" in warnings[0] and "ci.yml:4" in warnings[0]
    assert action_kind("actions/cache@1bd1e32a3bdc45362d1e726936510720a7c30a57") == "cache"
    assert action_kind("docker://alpine") is None
    assert action_kind("./local-action") is None


def test_needs_unknown_self_and_cycles() -> None:
    errs = errors_of("jobs:\n  a:\n    needs: zz\n    steps: [{run: x}]\n")
    assert errs[0].startswith("ci.yml:3: jobs.a.needs: needs 'zz', which is not a job")
    errs = errors_of("""\
jobs:
  a:
    needs: c
    steps: [{run: x}]
  b:
    needs: a
    steps: [{run: x}]
  c:
    needs: [b]
    steps: [{run: x}]
""")
    assert len(errs) == 1 and "the needs form a cycle: a -> c -> b -> a" in errs[0]
    assert errs[0].startswith("ci.yml:")


def test_bad_expressions_are_found_before_posting() -> None:
    errs = errors_of("jobs:\n  a:\n    steps:\n      - run: echo ${{ matrix.x == }}\n")
    assert errs[0].startswith("ci.yml:4: jobs.a.steps[0].run: ")
    errs = errors_of("jobs:\n  a:\n    if: github.ref ==\n    steps: [{run: x}]\n")
    assert errs[0].startswith("ci.yml:3: jobs.a.if: ")


def test_a_matrix_past_the_limit_is_refused() -> None:
    text = "jobs:\n  a:\n    strategy:\n      matrix:\n        x: [" + ", ".join(
        str(i) for i in range(20)) + "]\n        y: [" + ", ".join(
        str(i) for i in range(20)) + "]\n    steps: [{run: x}]\n"
    errs = errors_of(text)
    assert errs == ["ci.yml:4: jobs.a.strategy.matrix: the matrix expands to 400 jobs; "
                    "the limit is 256"]


def test_github_matrix_rules_include_and_exclude() -> None:
    # GitHub's documented example
    got = expand({
        "fruit": ["apple", "pear"], "animal": ["cat", "dog"],
        "include": [{"color": "green"}, {"color": "pink", "animal": "cat"},
                    {"fruit": "apple", "shape": "circle"}, {"fruit": "banana"},
                    {"fruit": "banana", "animal": "cat"}],
    })
    assert got == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]
    assert expand({"os": ["a", "b"], "v": [1, 2], "exclude": [{"os": "a"}]}) == \
        [{"os": "b", "v": 1}, {"os": "b", "v": 2}]
    assert expand({"include": [{"a": 1}, {"a": 2}]}) == [{"a": 1}, {"a": 2}]
    assert expand(None) == [{}]
    with pytest.raises(MatrixError, match="not a matrix key"):
        expand({"a": [1], "exclude": [{"b": 1}]})
    with pytest.raises(MatrixError, match="empty list"):
        expand({"a": []})
    assert label({"py": "3.11", "os": "linux"}) == "(3.11, linux)"


@settings(max_examples=60)
@given(st.dictionaries(st.sampled_from("abcd"), st.lists(st.integers(0, 3), min_size=1,
                                                         max_size=3, unique=True),
                       min_size=1, max_size=3),
       st.lists(st.dictionaries(st.sampled_from("abcd"), st.integers(0, 3), min_size=1,
                                max_size=2), max_size=2))
def test_the_matrix_is_the_product_minus_what_exclude_matches(
    axes: dict[str, list[int]], exclude: list[dict[str, int]]
) -> None:
    exclude = [e for e in exclude if set(e) <= set(axes)]
    product = [dict(zip(axes, v, strict=True)) for v in itertools.product(*axes.values())]
    keep = [c for c in product if not any(all(c[k] == v for k, v in e.items())
                                          for e in exclude)]
    if not keep:
        with pytest.raises(MatrixError):
            expand({**axes, "exclude": exclude})
        return
    assert expand({**axes, "exclude": exclude}) == keep


def test_levels_follow_needs() -> None:
    _, wf, _ = load("""\
jobs:
  build: {needs: [lint, test], steps: [{run: x}]}
  test: {steps: [{run: x}]}
  lint: {steps: [{run: x}]}
  deploy: {needs: build, steps: [{run: x}]}
""")
    assert job_levels(wf) == [["test", "lint"], ["build"], ["deploy"]]


def test_runs_on_maps_to_markets() -> None:
    assert market_for("nosgrid-gpu", "cpu").market == "gpu"
    assert market_for(["self-hosted", "nosgrid-a100"], None).market == "a100"
    assert market_for({"group": "g", "labels": ["nosgrid-x"]}, None).market == "x"
    assert market_for({"nosgrid": "cpu2"}, None).market == "cpu2"
    for label_ in ("ubuntu-latest", ["ubuntu-22.04", "x64"], "${{ matrix.os }}", None):
        assert market_for(label_, "cpu").market == "cpu"
    assert clamp_timeout(600, 3600) == (600, "")
    assert clamp_timeout(21600, 3600)[0] == 3600


def test_instances_resolve_matrix_image_env_and_timeout() -> None:
    _, wf, _ = load("""\
env: {GLOBAL: g, NUM: 3}
jobs:
  t:
    name: test
    runs-on: ${{ matrix.os }}
    container: ${{ matrix.image }}
    timeout-minutes: 7
    continue-on-error: ${{ matrix.exp }}
    env: {PY: "${{ matrix.py }}"}
    strategy:
      fail-fast: false
      matrix:
        py: ["3.11"]
        os: [nosgrid-cpu]
        image: [localhost/img:1]
        exp: [false]
        include: [{py: "3.12", os: ubuntu-latest, image: localhost/img:2, exp: true}]
    steps: [{run: x}]
""")
    ctx = JobContexts(github={"ref": "refs/heads/main"}, workflow_env={"GLOBAL": "g", "NUM": "3"})
    a, b = instances("t", wf.jobs["t"], ctx, default_market="dflt")
    assert (a.title, a.market, a.image, a.timeout_s, a.continue_on_error) == \
        ("test (3.11, nosgrid-cpu, localhost/img:1, false)", "cpu", "localhost/img:1", 420, False)
    assert a.env == {"GLOBAL": "g", "NUM": "3", "PY": "3.11"}
    assert (b.market, b.image, b.continue_on_error, b.key) == \
        ("dflt", "localhost/img:2", True, "t-2")


def test_the_committed_schema_is_current() -> None:
    committed = ROOT / "schemas" / "ci-workflow.schema.json"
    assert committed.read_text() == workflow_schema_text(), "run: nosgrid ci schema -o " \
        "schemas/ci-workflow.schema.json"
    schema = json.loads(committed.read_text())
    assert "jobs" in schema["required"]


def test_the_example_workflow_is_valid() -> None:
    _src, wf, warnings = load((ROOT / "examples/ci/.github/workflows/ci.yml").read_text())
    assert list(wf.jobs) == ["lint", "test", "build"] and len(warnings) == 1


def cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["nosgrid", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    return int(info.value.code or 0)


@pytest.mark.parametrize(("text", "needle"), [
    ("jobs:\n  a: {needs: b, steps: [{run: x}]}\n  b: {needs: a, steps: [{run: x}]}\n",
     "cycle"),
    ("jobs:\n  a: {steps: [{run: x}], bogus: 1}\n", "jobs.a.bogus: unknown key"),
    ("jobs:\n  a: {steps: [{uses: actions/setup-go@v5}]}\n", "'actions/setup-go@v5'"),
    ("jobs:\n  a:\n    strategy: {matrix: {x: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17], "
     "y: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}}\n    steps: [{run: x}]\n", "limit"),
])
def test_bad_files_exit_2_and_post_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    text: str, needle: str,
) -> None:
    (tmp_path / "ci.yml").write_text(text)
    # nothing listens on this URL: a file that got past the checks would fail to post
    monkeypatch.setenv("NOSGRID_URL", "http://127.0.0.1:9")
    assert cli(monkeypatch, "ci", "run", str(tmp_path / "ci.yml")) == 2
    err = capsys.readouterr().err
    assert "invalid workflow" in err and "nothing was posted" in err and needle in err
    assert cli(monkeypatch, "ci", "run", str(tmp_path / "ci.yml"), "--json") == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and any(needle in e for e in out["errors"])


def test_dry_run_prints_the_plan_and_posts_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOSGRID_URL", "http://127.0.0.1:9")
    wf = ROOT / "examples/ci/.github/workflows/ci.yml"
    assert cli(monkeypatch, "ci", "run", str(wf), "--dry-run", "--json", "--market", "cpu") == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["posted"] is False and plan["nosgrid_jobs"] == 4
    assert plan["stages"] == [["lint", "test"], ["build"]]
    test = next(j for j in plan["jobs"] if j["job"] == "test")
    assert [i["matrix"] for i in test["instances"]] == [{"suite": "add"}, {"suite": "mean"}]
    assert {i["market"] for i in test["instances"]} == {"cpu"}
    assert cli(monkeypatch, "ci", "run", str(wf), "--dry-run", "--job", "lint") == 0
    assert "1 nosgrid job(s)" in capsys.readouterr().out
