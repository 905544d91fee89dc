"""Pure planning of a job run: op → container spec, ports, restarts, names."""

from __future__ import annotations

import json
from pathlib import Path

from nosgrid.core.jobs.load import load_job_definition
from nosgrid.core.jobs.plan import effective_op, execution_groups, waits_for
from nosgrid.core.jobs.spec import RunArgs, RunOperation
from nosgrid.node.runner import (
    RunnerLimits,
    container_spec,
    exposed_ports,
    flow_id,
    op_host,
    restart_limit,
)
from nosgrid.node.runner.ops import OpRun, resolve_args

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "jobs" / "three-op-pipeline.json"
STORY = EXAMPLE.with_name("story-pipeline.json")


def test_example_pipeline_groups_and_global_merge() -> None:
    defn = load_job_definition(EXAMPLE.read_text())
    assert [(g.name, g.op_ids) for g in execution_groups(defn)] == [
        ("shared", ("shared",)), ("prepare", ("prepare",)),
        ("pair", ("server", "client", "watcher")),
    ]
    client = effective_op(defn, 3, "f")
    assert isinstance(client, RunOperation)
    assert client.args.env == {"GREETING": "hello-from-global", "NOSANA_ID": "f"}


def test_story_pipeline_runs_group_by_group_and_reads_earlier_groups_results() -> None:
    defn = load_job_definition(STORY.read_text())
    assert [(g.name, g.op_ids) for g in execution_groups(defn)] == [
        ("story", ("story",)), ("media", ("image", "video")), ("download", ("download",)),
    ]
    # every dependency is in an earlier group: satisfied, so no op waits (nor is stopped)
    assert [waits_for(defn, i) for i in range(len(defn.ops))] == [(), (), (), ()]
    runs = [OpRun(i, effective_op(defn, i, "f"), op_host("f", i, in_pod=False))
            for i in range(len(defn.ops))]
    story, image, video, download = runs
    story.logs += [("stdout", "title=The Fox"), ("stdout", "body=A quick tale"),
                   ("stdout", "slug=the-fox")]
    ctx = {"job": "j1", "host": "127.0.0.1", "variables": {}}
    assert resolve_args(image.op, runs, ctx).command_argv() == [  # type: ignore[arg-type]
        "/bin/sh", "-c", "echo drawing a cover for The Fox; echo cover=the-fox.png"]
    image.logs += [("stdout", "drawing a cover for The Fox"), ("stdout", "cover=the-fox.png")]
    video.logs += [("stdout", "rendering A quick tale"), ("stdout", "video=the-fox.mp4")]
    args = resolve_args(download.op, runs, ctx)  # type: ignore[arg-type]
    assert args.command_argv() == ['echo "uploaded story=The Fox cover=the-fox.png '
                                   'video=the-fox.mp4" | tee /outputs/manifest.txt']
    assert args.entrypoint_argv() == ["sh", "-c"]


def test_container_spec_follows_nosana_argv_rules(tmp_path: Path) -> None:
    args = RunArgs.model_validate({
        "image": "localhost/nosgrid-busybox:test", "cmd": "echo hi", "gpu": True,
        "volumes": [{"name": "cache", "dest": "/cache"}], "env": {"A": "1"},
    })
    spec = container_spec(args, flow="nosgrid-j1", index=2, job_id="j1",
                          limits=RunnerLimits(), pod="p", ports={8000: 18000},
                          output_mounts={"/outputs": tmp_path}, input_mounts={})
    assert spec.argv == ("/bin/sh", "-c", "echo hi") and spec.entrypoint is None
    assert spec.name == "nosgrid-j1-2" and spec.pod == "p"
    assert spec.volumes[0].volume == "nosgrid-j1-cache"
    assert spec.gpus == ("nvidia.com/gpu=all",)
    assert spec.labels == {"nosgrid.job": "j1", "nosgrid.flow": "nosgrid-j1"}
    assert spec.ports == {8000: 18000}
    assert spec.mounts[0].target == "/outputs" and not spec.mounts[0].read_only


def test_exposed_ports_with_checks() -> None:
    args = RunArgs.model_validate({"image": "busybox", "expose": [
        8000, {"port": 9000, "health_checks": [
            {"type": "http", "path": "/", "method": "GET", "expected_status": 200,
             "continuous": True}]}]})
    ports = exposed_ports(args)
    assert [p for p, _ in ports] == [8000, 9000]
    assert ports[1][1][0].continuous is True


def test_restart_limits() -> None:
    def limit(policy: object, ok: bool) -> int:
        return restart_limit(RunArgs.model_validate({"image": "b", "restart_policy": policy}),
                             exit_ok=ok)

    assert limit("no", False) == 0
    assert limit({"policy": "on-failure", "restart_tries": 2}, False) == 2
    assert limit({"policy": "on-failure", "restart_tries": 2}, True) == 0
    assert limit("always", True) == 3


def test_names() -> None:
    # one flow per assignment: a requeued job's containers never share the dead run's names
    assert flow_id("a/b c") == "nosgrid-a-b-c-a1"
    assert flow_id("j", 2) == "nosgrid-j-a2" != flow_id("j", 1)
    assert op_host("f", 1, in_pod=True) == "127.0.0.1"
    assert json.loads(EXAMPLE.read_text())["meta"]["nosgrid"]["network"] == "job"
