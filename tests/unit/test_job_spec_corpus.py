"""Nosana-shaped definitions (written for these tests from NOSANA-JOB-FORMAT.md) and broken ones."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nosgrid.core.errors import InvalidJobSpec
from nosgrid.core.jobs.load import load_job_definition, parse_job_definition

HEALTH = {"type": "http", "path": "/v1/models", "method": "GET", "expected_status": 200}

VALID: dict[str, dict[str, Any]] = {
    "llama-style with global.variables": {
        "version": "0.1",
        "type": "container",
        "meta": {
            "trigger": "dashboard",
            "system_requirements": {"required_vram": 12, "required_cuda": ["12.8", "12.9"]},
        },
        "global": {"variables": {"MODEL": "meta-llama/Llama-3.1-8B-Instruct", "PORT": "8000"}},
        "ops": [
            {
                "type": "container/run",
                "id": "vllm",
                "args": {
                    "image": "docker.io/vllm/vllm-openai:v0.10.0",
                    "entrypoint": ["/bin/sh", "-c"],
                    "cmd": [
                        "vllm serve %%global.variables.MODEL%% --port %%global.variables.PORT%%"
                    ],
                    "gpu": True,
                    "expose": [{"port": 8000, "health_checks": [{**HEALTH, "continuous": True}]}],
                    "resources": [
                        {
                            "type": "HF",
                            "repo": "%%global.variables.MODEL%%",
                            "target": "/root/.cache/huggingface/hub",
                        }
                    ],
                },
            }
        ],
    },
    "Ollama resource with a literal model": {
        "version": "0.1",
        "type": "container",
        "meta": {"trigger": "job-builder"},
        "global": {"variables": {"MODEL": "gemma3:4b"}},
        "ops": [
            {
                "type": "container/run",
                "id": "ollama",
                "args": {
                    "image": "docker.io/ollama/ollama:0.11.4",
                    "gpu": True,
                    "expose": 11434,
                    "resources": [{"type": "Ollama", "model": "%%global.variables.MODEL%%"}],
                },
            }
        ],
    },
    "spread and pairs markers, remove-if-empty, expose literal": {
        "version": "0.1",
        "type": "container",
        "ops": [
            {
                "type": "container/run",
                "id": "config",
                "args": {"image": "busybox", "cmd": 'echo \'{"A":"1"}\''},
                "results": {
                    "env": "\\{.*\\}",
                    "ports": {"regex": "\\[.*\\]", "logType": ["stdout"]},
                },
            },
            {
                "type": "container/run",
                "id": "app",
                "args": {
                    "image": "busybox",
                    "env": {
                        "__spread__": "%%ops.config.results.env%%",
                        "__pairs__": "%%ops.config.results.pairs%%",
                        "FIXED": "x",
                    },
                    "cmd": ["serve", "%%ops.config.results.flag%%", "__remove-if-empty__"],
                    "expose": [
                        "%%ops.config.results.port%%",
                        {"__spread__": "%%ops.config.results.ports%%"},
                    ],
                    "resources": [
                        "__remove-if-empty__",
                        {"__spread__": "%%ops.config.results.res%%"},
                    ],
                },
            },
        ],
    },
    "restart_policy object, volumes, aliases, auth, private": {
        "version": "0.1",
        "type": "container",
        "ops": [
            {"type": "container/create-volume", "id": "cache", "args": {"name": "cache"}},
            {
                "type": "container/run",
                "id": "worker",
                "args": {
                    "image": "registry.example.com/team/worker:1.0",
                    "restart_policy": {"policy": "on-failure", "restart_tries": 3},
                    "volumes": [{"name": "cache", "dest": "/cache"}],
                    "aliases": "worker,api",
                    "private": True,
                    "authentication": {"docker": {"username": "u", "password": "p"}},
                    "expose": [
                        {
                            "port": 9000,
                            "type": "websocket",
                            "health_checks": [
                                {
                                    "type": "websocket",
                                    "expected_response": "pong",
                                    "continuous": False,
                                }
                            ],
                        },
                        8080,
                    ],
                },
            },
        ],
    },
    "confidential placeholder": {
        "version": "0.1",
        "type": "container",
        "meta": {"trigger": "cli"},
        "logistics": {
            "send": {"type": "api-listen", "args": {}},
            "receive": {"type": "api-listen", "args": {"endpoint": "https://example.com/r"}},
        },
        "ops": [],
    },
    "ids with dots and colons, sdk-only keys, version 0.0.1": {
        "version": "0.0.1",
        "type": "container",
        "deployment_id": "dep-1",
        "ops": [
            {
                "type": "container/run",
                "id": "gpt-oss:120b",
                "args": {
                    "image": "ollama/ollama",
                    "output": "/out",
                    "required_vram": 24,
                    "restart_policy": "always",
                    "expose": "8000-8010",
                },
            },
            {
                "type": "container/run",
                "id": "Nanonets-OCR2:3B",
                "args": {
                    "image": "busybox",
                    "cmd": ["wget", "http://%%ops.gpt-oss:120b.host%%:8000"],
                    "work_dir": "/w",
                },
                "execution": {"group": "g", "depends_on": ["x.y"], "stop_if_dependent_stops": True},
            },
            {
                "type": "container/run",
                "id": "x.y",
                "args": {"image": "busybox"},
                "execution": {"group": "g"},
            },
        ],
    },
    "S3 shapes": {
        "version": "0.1",
        "type": "container",
        "ops": [
            {
                "type": "container/run",
                "id": "s3",
                "args": {
                    "image": "busybox",
                    "resources": [
                        {
                            "type": "S3",
                            "url": "s3://nos-ai-models-qllsn32u/x",
                            "target": "/a",
                            "files": ["f"],
                        },
                        {
                            "type": "S3",
                            "bucket": "b",
                            "target": "/b",
                            "allowWrite": True,
                            "IAM": {"REGION": "r", "ACCESS_KEY_ID": "k", "SECRET_ACCESS_KEY": "s"},
                        },
                        {
                            "type": "S3",
                            "buckets": [{"url": "https://x/b1", "files": ["a"]}],
                            "target": "/c",
                        },
                    ],
                },
            }
        ],
    },
    "benchmark pair: depends_on in one group, results with lookbehind": {
        "version": "0.1",
        "type": "container",
        "meta": {"trigger": "benchmark"},
        "ops": [
            {
                "type": "container/run",
                "id": "server",
                "args": {"image": "ollama/ollama:0.6.6", "gpu": True, "expose": 11434},
                "execution": {
                    "group": "llm-pair",
                    "depends_on": ["benchmark"],
                    "stop_if_dependent_stops": True,
                },
            },
            {
                "type": "container/run",
                "id": "benchmark",
                "args": {"image": "busybox", "cmd": "curl http://%%ops.server.host%%:11434"},
                "results": {
                    "tps": "(?<=tokens_per_second: )[\\d.]+",
                    "mean": {"regex": '"mean":(-?[\\d.]+)', "logType": ["stdout", "stderr"]},
                },
                "execution": {"group": "llm-pair"},
            },
        ],
    },
    "cli-built job and a global image": {
        "version": "0.1",
        "type": "container",
        "meta": {"trigger": "cli"},
        "global": {
            "gpu": True,
            "image": "ubuntu",
            "entrypoint": "/bin/bash",
            "work_dir": "/w",
            "env": {"A": "1"},
        },
        "ops": [
            {
                "type": "container/run",
                "id": "run-from-cli",
                "args": {"cmd": "nvidia-smi", "image": "ubuntu"},
            }
        ],
    },
}


# The story pipeline of Nosana's literals documentation, in its shape: a story op, a media
# group whose two ops read its results, a download op that depends on both media ops (in an
# earlier group) and reads all three ops' results.
VALID["story pipeline with dependencies on earlier groups"] = {
    "version": "0.1",
    "type": "container",
    "meta": {"trigger": "cli"},
    "ops": [
        {
            "type": "container/run",
            "id": "story",
            "args": {"image": "docker.io/example/story-writer:1", "cmd": ["--length", "short"]},
            "results": {"title": "title=.*", "body": "body=.*", "slug": "slug=.*"},
            "execution": {"group": "story"},
        },
        {
            "type": "container/run",
            "id": "image",
            "args": {"image": "docker.io/example/painter:1",
                     "cmd": ["--prompt", "a cover for %%ops.story.results.title%%"]},
            "results": {"cover_path": ".*\\.png"},
            "execution": {"group": "media", "depends_on": ["story"]},
        },
        {
            "type": "container/run",
            "id": "video",
            "args": {"image": "docker.io/example/renderer:1",
                     "cmd": ["--script", "%%ops.story.results.body%%"]},
            "results": {"video_path": ".*\\.mp4"},
            "execution": {"group": "media", "depends_on": ["story"]},
        },
        {
            "type": "container/run",
            "id": "download",
            "args": {
                "image": "docker.io/library/alpine",
                "entrypoint": ["sh"],
                "cmd": ["-c", "echo cover=%%ops.image.results.cover_path%% "
                              "video=%%ops.video.results.video_path%%"],
                "resources": [{"type": "S3", "target": "/upload",
                               "url": "s3://bucket/stories/%%ops.story.results.slug%%"}],
            },
            "results": {"dest": "uploaded=.*"},
            "execution": {"group": "download", "depends_on": ["image", "video"]},
        },
    ],
}


@pytest.mark.parametrize("data", VALID.values(), ids=list(VALID))
def test_nosana_shaped_definitions_validate(data: dict[str, Any]) -> None:
    load_job_definition(json.dumps(data))


def base(**args: Any) -> dict[str, Any]:
    return {"type": "container/run", "id": "a", "args": {"image": "busybox", **args}}


def job(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"version": "0.1", "type": "container", "ops": list(ops)}


def exposed(check: dict[str, Any]) -> dict[str, Any]:
    return base(expose=[{"port": 80, "health_checks": [check]}])


def dep(op_id: str, *deps: str, group: str | None = None, **extra: Any) -> dict[str, Any]:
    execution: dict[str, Any] = dict(extra)
    if deps:
        execution["depends_on"] = list(deps)
    if group is not None:
        execution["group"] = group
    return {
        "type": "container/run",
        "id": op_id,
        "args": {"image": "busybox"},
        "execution": execution,
    }


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown key in op", job({**base(), "retries": 3}), "ops[0].retries: unknown field"),
    ("unknown key in args", job(base(command="x")), "ops[0].args.command: unknown field"),
    (
        "unknown key in health check",
        job(exposed({**HEALTH, "continuous": True, "timeout": 5})),
        "ops[0].args.expose[0].health_checks[0].timeout: unknown field",
    ),
    (
        "health check without continuous",
        job(base(), base(), exposed(HEALTH)),
        "ops[2].args.expose[0].health_checks[0].continuous: field required",
    ),
    (
        "stop_if_dependent_stops without depends_on",
        job(dep("a", stop_if_dependent_stops=True)),
        "ops[0].execution.stop_if_dependent_stops: only allowed together with depends_on",
    ),
    (
        "duplicate ids",
        job(dep("a"), dep("a")),
        "ops[1].id: duplicate op id 'a' (also used by ops[0])",
    ),
    (
        "self dependency",
        job(dep("a", "a")),
        "ops[0].execution.depends_on[0]: op 'a' depends on itself",
    ),
    (
        "unknown dependency",
        job(dep("a", group="g"), dep("b", "a", "zz", group="g")),
        "ops[1].execution.depends_on[1]: op 'b' depends on unknown op 'zz'",
    ),
    (
        "dependency on a later group",
        job(dep("b", "a"), dep("a")),
        "ops[0].execution.depends_on[0]: op 'b' depends on 'a', which is in group 'a', which "
        "runs after group 'b'; a dependency must be in the same group or an earlier one",
    ),
    (
        "dependency on a later group, groups interleaved",
        job(dep("a", group="g"), dep("b", "c", group="g"), dep("c", group="h")),
        "ops[1].execution.depends_on[0]: op 'b' depends on 'c', which is in group 'h'",
    ),
    (
        "cycle",
        job(dep("a", "c", group="g"), dep("b", "a", group="g"), dep("c", "b", group="g")),
        "ops[0].execution.depends_on: dependency cycle: 'a' -> 'c' -> 'b' -> 'a'",
    ),
    (
        "number cmd",
        job(base(cmd=5)),
        "ops[0].args.cmd: expected a string or an array, got a number",
    ),
    ("number in cmd array", job(base(cmd=["a", 1])), "ops[0].args.cmd[1]: "),
    ("bad image ref", job(base(image="My Image")), "ops[0].args.image: 'My Image' is not a valid"),
    (
        "too many ops",
        job(*[dep(f"op{i}") for i in range(65)]),
        "ops: at most 64 items allowed, got 65",
    ),
    (
        "unknown op type",
        job({**base(), "type": "container/exec"}),
        "ops[0].type: expected 'container/run' or",
    ),
    ("missing op type", job({"id": "a", "args": {}}), "ops[0].type: field required"),
    (
        "missing image",
        job({"type": "container/run", "id": "a", "args": {}}),
        "ops[0].args.image: field required",
    ),
    ("bad top-level type", {**job(), "type": "vm"}, "type: expected 'container', got 'vm'"),
    ("missing version", {"type": "container", "ops": []}, "version: field required"),
    ("env value not a string", job(base(env={"N": 1})), "ops[0].args.env.N: expected a string"),
    (
        "duplicate exposed port",
        job(base(expose=[80, {"port": 80}])),
        "ops[0].args.expose: port 80 is exposed twice",
    ),
    (
        "port out of range",
        job(base(expose=70000)),
        "ops[0].args.expose: must be less than or equal to 65535",
    ),
    (
        "expose plain string",
        job(base(expose="http")),
        "ops[0].args.expose: expected a literal like",
    ),
    ("expose boolean", job(base(expose=[True])), "ops[0].args.expose[0]: expected a port number"),
    (
        "unknown service type",
        job(base(expose=[{"port": 1, "type": "grpc"}])),
        "ops[0].args.expose[0].type: expected 'web'",
    ),
    (
        "unknown health check type",
        job(exposed({"type": "tcp"})),
        "ops[0].args.expose[0].health_checks[0].type: expected 'http' or 'websocket', got 'tcp'",
    ),
    (
        "bad http method",
        job(exposed({**HEALTH, "method": "PATCH", "continuous": True})),
        "ops[0].args.expose[0].health_checks[0].method: expected 'GET'",
    ),
    (
        "unknown resource type",
        job(base(resources=[{"type": "GCS", "target": "/x"}])),
        "ops[0].args.resources[0]: expected a resource with type",
    ),
    (
        "HF without target",
        job(base(resources=[{"type": "HF", "repo": "r"}])),
        "ops[0].args.resources[0].target: field required",
    ),
    (
        "S3 bucket and buckets",
        job(base(resources=[{"type": "S3", "target": "/t", "bucket": "b", "buckets": []}])),
        "ops[0].args.resources[0].buckets: use either 'bucket' or 'buckets'",
    ),
    (
        "S3 bucket with files",
        job(base(resources=[{"type": "S3", "target": "/t", "bucket": "b", "files": ["x"]}])),
        "ops[0].args.resources[0].files: 'files' is not allowed with 'bucket'",
    ),
    (
        "incomplete IAM",
        job(
            base(
                resources=[{"type": "S3", "target": "/t", "url": "s3://x", "IAM": {"REGION": "r"}}]
            )
        ),
        "ops[0].args.resources[0].IAM.ACCESS_KEY_ID: field required",
    ),
    (
        "volume with extra key",
        job(base(volumes=[{"name": "v", "dest": "/v", "mode": "ro"}])),
        "ops[0].args.volumes[0].mode: unknown field",
    ),
    (
        "create-volume without name",
        job({"type": "container/create-volume", "id": "v", "args": {}}),
        "ops[0].args.name: field required",
    ),
    (
        "restart policy",
        job(base(restart_policy="sometimes")),
        "ops[0].args.restart_policy: expected 'no'",
    ),
    (
        "restart tries",
        job(base(restart_policy={"policy": "on-failure", "restart_tries": -1})),
        "ops[0].args.restart_policy.restart_tries: must be greater than or equal to 0",
    ),
    (
        "result logType",
        job({**base(), "results": {"r": {"regex": "x", "logType": ["stdout", "stdout"]}}}),
        "ops[0].results.r.logType: logType values must be unique",
    ),
    (
        "result logType value",
        job({**base(), "results": {"r": {"regex": "x", "logType": ["syslog"]}}}),
        "ops[0].results.r.logType[0]: expected 'stdin'",
    ),
    ("global unknown key", {**job(), "global": {"cmd": "x"}}, "global.cmd: unknown field"),
    (
        "spread marker with a plain string",
        job(base(expose=[{"__spread__": "[1,2]"}])),
        "ops[0].args.expose[0].__spread__: ",
    ),
    (
        "logistics leg type",
        {**job(), "logistics": {"send": {"type": "email", "args": {}}}},
        "logistics.send.type: expected 'api' or 'api-listen', got 'email'",
    ),
    (
        "empty op id",
        job({**base(), "id": ""}),
        "ops[0].id: string should have at least 1 character",
    ),
    (  # JSON may escape half a surrogate pair; nothing can encode, store or hash it
        "lone surrogate",
        {**job(base()), "meta": {"description": "story \ud800"}},
        "meta.description: holds a lone surrogate (U+D800 at character 6)",
    ),
    (
        "lone surrogate in a key",
        job(base(env={"A\udfff": "x"})),
        "ops[0].args.env: a key holds a lone surrogate (U+DFFF at character 1)",
    ),
    ("NUL in argv", job(base(cmd=["echo", "a\x00b"])), "ops[0].args.cmd[1]: holds a NUL"),
]


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in INVALID], ids=[n for n, _, _ in INVALID]
)
def test_invalid_definitions_name_the_field(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidJobSpec) as info:
        load_job_definition(json.dumps(data))
    assert any(line.startswith(expected) for line in info.value.errors), info.value.errors


def test_bad_text_is_refused_however_it_arrives() -> None:
    data = {**job(base()), "meta": {"description": "\ud800"}}
    for text in (json.dumps(data), 'version: "0.1"\ntype: container\nmeta: {d: "\\ud800"}\n'
                 "ops: []\n"):
        with pytest.raises(InvalidJobSpec, match="lone surrogate"):
            load_job_definition(text)
    with pytest.raises(InvalidJobSpec, match="the definition holds a lone surrogate"):
        load_job_definition(json.dumps(data, ensure_ascii=False))  # the character itself
    with pytest.raises(InvalidJobSpec, match=r"meta\.description: holds a lone surrogate"):
        parse_job_definition(data)  # an API body, already parsed
