"""Execution groups, plan checks and the global merge (NOSANA-JOB-FORMAT §3, §7)."""

from __future__ import annotations

import json
from typing import Any

from nosgrid.core.jobs.graph import OpNode, group_order, plan_problems
from nosgrid.core.jobs.load import load_job_definition
from nosgrid.core.jobs.plan import (
    container_name,
    effective_op,
    execution_groups,
    volume_name,
    waits_for,
)
from nosgrid.core.jobs.spec import CreateVolumeOperation, JobDefinition, RunOperation


def defn(*ops: dict[str, Any], **top: Any) -> JobDefinition:
    data = {"version": "0.1", "type": "container", "ops": list(ops), **top}
    return load_job_definition(json.dumps(data))


def op(
    op_id: str, group: str | None = None, deps: tuple[str, ...] = (), **args: Any
) -> dict[str, Any]:
    execution: dict[str, Any] = {}
    if group:
        execution["group"] = group
    if deps:
        execution["depends_on"] = list(deps)
    out: dict[str, Any] = {
        "type": "container/run",
        "id": op_id,
        "args": {"image": "busybox", **args},
    }
    if execution:
        out["execution"] = execution
    return out


def test_groups_run_in_order_of_first_appearance() -> None:
    d = defn(op("a"), op("b", "g"), op("c"), op("d", "g", ("b",)), op("e", "a"))
    groups = execution_groups(d)
    assert [(g.name, g.op_ids, g.indices) for g in groups] == [
        ("a", ("a", "e"), (0, 4)),  # an op without a group is the group named after its id
        ("g", ("b", "d"), (1, 3)),
        ("c", ("c",), (2,)),
    ]


def test_plan_problems_on_plain_nodes() -> None:
    assert plan_problems([]) == []
    assert plan_problems([OpNode("a", "g", ("b",)), OpNode("b", "g", ())]) == []
    two = plan_problems([OpNode("a", "g", ("b",)), OpNode("b", "g", ("a",))])
    assert two == [("ops[0].execution.depends_on", "dependency cycle: 'a' -> 'b' -> 'a'")]
    both = plan_problems(
        [
            OpNode("a", "g", ("b",)),
            OpNode("b", "g", ("a",)),
            OpNode("c", "h", ("d",)),
            OpNode("d", "h", ("c",)),
        ]
    )
    assert [path for path, _ in both] == [
        "ops[0].execution.depends_on",
        "ops[2].execution.depends_on",
    ]
    assert group_order([OpNode("x", None, ())]) == [("x", [0])]


def test_a_dependency_on_an_earlier_group_is_satisfied_a_later_one_is_not() -> None:
    story = [OpNode("story", "story", ()), OpNode("image", "media", ("story",)),
             OpNode("video", "media", ("story",)), OpNode("download", "download",
                                                        ("image", "video"))]
    assert plan_problems(story) == []
    later = plan_problems([OpNode("a", "g", ("b",)), OpNode("b", "h", ())])
    assert later == [("ops[0].execution.depends_on[0]",
                      "op 'a' depends on 'b', which is in group 'h', which runs after group "
                      "'g'; a dependency must be in the same group or an earlier one")]
    # a group's rank is its first appearance: 'c' belongs to 'g', which runs before 'h'
    assert plan_problems([OpNode("a", "g", ()), OpNode("b", "h", ("c",)),
                          OpNode("c", "g", ())]) == []
    unknown = plan_problems([OpNode("a", "g", ()), OpNode("b", "h", ("a", "zz"))])
    assert unknown == [("ops[1].execution.depends_on[1]", "op 'b' depends on unknown op 'zz'")]
    # a cycle needs an edge into a later group or one inside a group: both still refused
    cycle = plan_problems([OpNode("a", "g", ("b",)), OpNode("b", "g", ("a",)),
                           OpNode("c", "h", ("a",))])
    assert cycle == [("ops[0].execution.depends_on", "dependency cycle: 'a' -> 'b' -> 'a'")]


def test_an_op_waits_only_for_the_dependencies_of_its_own_group() -> None:
    d = defn(op("story"), op("db", "work"), op("app", "work", ("story", "db")),
             op("report", "end", ("app", "story")))
    assert [waits_for(d, i) for i in range(4)] == [(), (), ("db",), ()]


def test_effective_op_merges_global_like_the_node() -> None:
    d = defn(
        op("plain"),
        op("own", gpu=False, entrypoint=["sh", "-c"], work_dir="/op", env={"A": "op", "B": "b"}),
        {"type": "container/create-volume", "id": "vol", "args": {"name": "cache"}},
        **{
            "global": {
                "image": "ubuntu",
                "gpu": True,
                "entrypoint": "/bin/bash",
                "work_dir": "/g",
                "env": {"A": "global", "G": "g"},
            }
        },
    )
    plain = effective_op(d, 0, "flow9")
    assert isinstance(plain, RunOperation)
    assert plain.args.gpu is True
    assert plain.args.entrypoint == "/bin/bash" and plain.args.work_dir == "/g"
    assert plain.args.env == {"A": "global", "G": "g", "NOSANA_ID": "flow9"}
    assert plain.args.image == "busybox"  # required on the op, so the op's wins
    own = effective_op(d, 1, "flow9")
    assert isinstance(own, RunOperation)
    assert own.args.gpu is True  # an op cannot switch a global true off
    assert own.args.entrypoint_argv() == ["sh", "-c"] and own.args.work_dir == "/op"
    assert own.args.env == {"A": "op", "G": "g", "B": "b", "NOSANA_ID": "flow9"}
    assert isinstance(effective_op(d, 2, "flow9"), CreateVolumeOperation)
    assert d.ops[0].args.env is None  # the definition itself is untouched


def test_effective_op_without_global() -> None:
    d = defn(op("a", env={"X": "1"}))
    merged = effective_op(d, 0, "f")
    assert isinstance(merged, RunOperation)
    assert merged.args.env == {"X": "1", "NOSANA_ID": "f"}
    assert merged.args.gpu is None


def test_names() -> None:
    assert container_name("flow", 0) == "flow-0"
    assert volume_name("flow", "cache") == "flow-cache"
    d = defn(op("a"), op("b", "a"))
    assert d.op("b").group_name == "a"
