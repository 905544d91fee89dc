"""Inference audits against llama.cpp's server in the hardened Podman image (issue 14):
the replica answers as the gateway asks (explicit sampler, seed), and the auditor's replay
script runs in the same image as an audit job would (model read-only, no network). An
honest replica passes; one serving a requantized copy under the same name is caught."""

from __future__ import annotations

import ctypes
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from test_inference_image import GGUF, llama_image, model_dir, runtime, serve

from nosgrid.core.verification.inference import ReplayScore, judge_replay, request_seed
from nosgrid.node.executor import ContainerSpec, MiB, Mount, PodmanRuntime
from nosgrid.node.executor import inference_replay as rp
from nosgrid.node.executor.inference_image import (
    LLAMA_IMAGE,
    SMOLLM2_FILE,
    cached_llama_wheel,
    host_llama_path,
)

pytestmark = [pytest.mark.container, pytest.mark.slow]
__all__ = ["llama_image", "model_dir", "runtime"]  # fixtures, re-used

SAMPLER = {"top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0,
           "frequency_penalty": 0.0, "presence_penalty": 0.0}
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("chat", {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                           {"role": "user", "content": "Name three colours."}],
              "max_tokens": 24, "temperature": 0.8, "seed": request_seed("req_a"),
              **SAMPLER}),
    ("completions", {"prompt": "The history of chess begins", "max_tokens": 24,
                     "temperature": 0.0, "seed": request_seed("req_b"), **SAMPLER}),
]


@pytest.fixture(scope="module")
def requant_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if cached_llama_wheel() is None:
        pytest.skip("needs the llama-cpp-python wheel to requantize")
    sys.path.insert(0, str(host_llama_path()))
    import llama_cpp

    out = tmp_path_factory.mktemp("requant")
    params = llama_cpp.llama_model_quantize_default_params()
    params.allow_requantize = True
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    src = str(model_dir / SMOLLM2_FILE).encode()
    assert llama_cpp.llama_model_quantize(src, str(out / SMOLLM2_FILE).encode(),
                                          ctypes.byref(params)) == 0
    out.chmod(0o755)  # the job user (uid 1000) reads the mount
    (out / SMOLLM2_FILE).chmod(0o644)
    return out  # the same file name: served under the original model's name


async def _answers(runtime: PodmanRuntime, models: Path) -> list[dict[str, Any]]:
    out = []
    async with serve(runtime, models) as (client, _logs):
        for kind, body in REQUESTS:
            path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
            resp = await client.post(path, json={"model": "smollm2", **body})
            assert resp.status_code == 200, resp.text
            answer = resp.json()
            choice = answer["choices"][0]
            text = choice["message"]["content"] if kind == "chat" else choice["text"]
            out.append({"hash": f"{len(out):064x}", "kind": kind, "request": body,
                        "seed": body["seed"], "output": {
                            "text": text, "finish_reason": choice["finish_reason"]},
                        "usage": {k: answer["usage"][k]
                                  for k in ("prompt_tokens", "completion_tokens")}})
    return out


async def _audit_job(runtime: PodmanRuntime, models: Path, records: list[dict[str, Any]],
                     work: Path) -> list[dict[str, Any]]:
    """The audit batch as a job: the replay script on the reference model files."""
    work.mkdir()
    (work / "batch.json").write_text(json.dumps(records))
    script = work.parent / "script"
    script.mkdir()
    shutil.copy(rp.__file__, script / "inference_replay.py")
    result = await runtime.run(ContainerSpec(
        image=LLAMA_IMAGE,
        argv=("python3", "/audit/inference_replay.py", f"/models/{SMOLLM2_FILE}",
              "/work/batch.json", "/work/scores.json"),
        mounts=(Mount(models, "/models", read_only=True), Mount(script, "/audit")),
        host_work_dir=work, memory_bytes=1024 * MiB, cpus=2.0), deadline_s=900)
    assert result.exit_code == 0, result
    scores: list[dict[str, Any]] = json.loads((work / "scores.json").read_text())
    return scores


def _outcomes(records: list[dict[str, Any]], scores: list[dict[str, Any]]) -> list[str]:
    by_hash = {s["hash"]: s for s in scores}
    out = []
    for rec in records:
        s = by_hash[rec["hash"]]
        out.append(judge_replay(ReplayScore(s["positions"], s["mismatches"],
                                            s["prompt_tokens"], s["completion_tokens"],
                                            s["stop_ok"]),
                                claimed_prompt=rec["usage"]["prompt_tokens"],
                                claimed_completion=rec["usage"]["completion_tokens"]
                                ).outcome)
    return out


async def test_an_honest_replica_passes_and_a_requantized_one_is_caught(
        llama_image: str, model_dir: Path, requant_dir: Path, runtime: PodmanRuntime,
        tmp_path: Path) -> None:
    assert GGUF is not None
    honest = await _answers(runtime, model_dir)
    cheat = await _answers(runtime, requant_dir)
    assert [r["output"]["text"] for r in honest] != [r["output"]["text"] for r in cheat]
    scores = await _audit_job(runtime, model_dir, honest + [
        {**c, "hash": f"{i + 10:064x}"} for i, c in enumerate(cheat)], tmp_path / "audit")
    assert _outcomes(honest, scores) == ["clean", "clean"]
    cheated = _outcomes([{**c, "hash": f"{i + 10:064x}"} for i, c in enumerate(cheat)],
                        scores)
    for h, c, outcome in zip(honest, cheat, cheated, strict=True):
        # an answer the cheaper model happens to share with the real one harms no one
        if c["output"]["text"] != h["output"]["text"]:
            assert outcome != "clean", (h["output"], c["output"])
