"""Flood benchmark: an honest client's post→assigned latency with and without attackers.

A real ``nosgrid up`` stack (a coordinator process on 127.0.0.1 and one node agent) runs
an honest client that posts small container jobs one after another (each waits until the
previous one settled, so the node is long-polling when the next is posted). It is
measured first alone, then while an attacker process sends, concurrently and bounded in
time:

* ``unsigned``: requests with no signature headers;
* ``forged``: signed-looking requests from fresh keys whose signature is wrong;
* ``replay``: one correctly signed post of a funded key, sent again and again;
* ``oversized``: 2 MiB bodies; ``malformed``: bodies that are not JSON;
* ``fresh_unfunded``: real signed posts from hundreds of fresh, unfunded keys;
* ``spam_key``: a funded key posting and cancelling as fast as it can (in a market with a
  posting fee that no honest node serves, so only the submission layer is hit);
* ``fake_nodes``: dozens of registered nodes (one operator) long-polling.

Prints one JSON object: the honest p50/p99 both ways and their ratio (goal ≤ 2), the
requests and status codes per attack, 5xx count (goal 0), the coordinator's RSS before
and after, the cost of a refused request measured in process (the budget middleware
answering 429) against a minimal accepted request, the spam key's accepted posts against
its budget, and whether ``ledger verify`` is clean.

Usage: ``python bench/flood.py [--jobs N] [--flood-s S]`` (defaults: 15 jobs, 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from solders.keypair import Keypair

from nosgrid.cli.up import Stack, _keypair
from nosgrid.core.budgets import DEFAULT_BUDGETS
from nosgrid.core.identity import HEADER_PUBKEY
from nosgrid.node.executor import BUSYBOX_IMAGE
from nosgrid.node.executor.images import build_test_images
from nosgrid.sdk import Client
from nosgrid.sdk.client import AsyncClient
from nosgrid.sdk.wallet import sign_headers

SPEC = {"version": "0.1", "type": "container",
        "ops": [{"type": "container/run", "id": "t", "args": {"image": BUSYBOX_IMAGE,
                                                              "cmd": "true"}}]}
SPAM_MARKET = {"name": "spam", "price_per_second": 1, "max_timeout": 60,
               "min_stake": 1_000_000, "posting_fee": 1_000}
HW = {"cpu_cores": 2, "memory_mb": 4096}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def honest_round(c: Client, jobs: int) -> list[float]:
    """Post ``jobs`` jobs one after another; the post→assigned latency of each (ms)."""
    out = []
    for _ in range(jobs):
        t0 = time.perf_counter()
        job = c.post_job(spec=SPEC, market="cpu", timeout=30)
        state = job.state
        while state == "queued":
            time.sleep(0.01)
            state = c.job(job.id).state
        out.append((time.perf_counter() - t0) * 1000)
        while c.job(job.id).state not in ("settled", "failed", "cancelled"):
            time.sleep(0.05)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


# ------------------------------------------------------------------------- the attacker


async def _attack(url: str, spam_kp: bytes, duration: float, results: dict[str, Any]) -> None:
    codes: dict[str, Counter[int]] = {}
    deadline = time.monotonic() + duration
    spam = Keypair.from_bytes(spam_kp)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=url, timeout=40.0, limits=limits) as http:

        def note(kind: str, status: int) -> None:
            codes.setdefault(kind, Counter())[status] += 1

        async def send(kind: str, method: str, path: str, body: bytes = b"",
                       headers: dict[str, str] | None = None) -> httpx.Response | None:
            try:
                r = await http.request(method, path, content=body or None,
                                       headers=headers or {})
            except httpx.HTTPError:
                note(kind, 0)
                return None
            note(kind, r.status_code)
            return r

        async def loop(kind: str, pause: float, once: Any) -> None:
            while time.monotonic() < deadline:
                await once()
                await asyncio.sleep(pause)

        async def unsigned() -> None:
            await send("unsigned", "POST", "/v1/jobs", json.dumps({"spec": SPEC}).encode(),
                       {"content-type": "application/json"})

        async def forged() -> None:
            kp = Keypair()
            body = json.dumps({"spec": SPEC}).encode()
            h = sign_headers(kp, "POST", "/v1/jobs", body)
            h["x-nosgrid-signature"] = str(Keypair().sign_message(b"not this"))
            await send("forged", "POST", "/v1/jobs", body,
                       {**h, "content-type": "application/json"})

        body = json.dumps({"spec": SPEC, "market": "spam", "timeout": 5}).encode()
        replayed = {**sign_headers(spam, "POST", "/v1/jobs", body),
                    "content-type": "application/json"}

        async def replay() -> None:
            await send("replay", "POST", "/v1/jobs", body, replayed)

        big = b"{" + b" " * (2 << 20) + b"}"

        async def oversized() -> None:
            await send("oversized", "POST", "/v1/jobs", big,
                       {"content-type": "application/json"})

        async def malformed() -> None:
            kp = Keypair()
            junk = b'{"spec": [unterminated'
            await send("malformed", "POST", "/v1/jobs", junk,
                       {**sign_headers(kp, "POST", "/v1/jobs", junk),
                        "content-type": "application/json"})

        fresh = [Keypair() for _ in range(300)]
        turn = [0]

        async def fresh_unfunded() -> None:
            kp = fresh[turn[0] % len(fresh)]
            turn[0] += 1
            b = json.dumps({"spec": SPEC, "market": "cpu", "timeout": 5}).encode()
            await send("fresh_unfunded", "POST", "/v1/jobs", b,
                       {**sign_headers(kp, "POST", "/v1/jobs", b),
                        "content-type": "application/json"})

        spammer = AsyncClient(url, spam)
        spammer.rate_limit_retries = 0
        spam_posts = [0]

        async def spam_key() -> None:
            b = json.dumps({"spec": SPEC, "market": "spam", "timeout": 5}).encode()
            r = await send("spam_key", "POST", "/v1/jobs", b,
                           {**sign_headers(spam, "POST", "/v1/jobs", b),
                            "content-type": "application/json"})
            if r is not None and r.status_code == 201:
                spam_posts[0] += 1
                job_id = r.json()["id"]
                await send("spam_key", "POST", f"/v1/jobs/{job_id}/cancel", b"",
                           sign_headers(spam, "POST", f"/v1/jobs/{job_id}/cancel", b""))

        fake_nodes = [AsyncClient(url, Keypair()) for _ in range(24)]
        operator = Keypair()
        for n in fake_nodes:
            n.rate_limit_retries = 5
            await n.register_node(HW, ["no-such-market"], operator=operator)

        async def fake_node(n: AsyncClient) -> None:
            while time.monotonic() < deadline:
                p = "/v1/nodes/poll"
                b = json.dumps({"wait": max(0.5, min(10.0, deadline - time.monotonic()))})
                await send("fake_nodes", "POST", p, b.encode(),
                           {**sign_headers(n.keypair, "POST", p, b.encode()),
                            "content-type": "application/json"})

        tasks = [loop("unsigned", 0.01, unsigned), loop("forged", 0.01, forged),
                 loop("replay", 0.02, replay), loop("oversized", 0.2, oversized),
                 loop("malformed", 0.02, malformed),
                 loop("fresh_unfunded", 0.005, fresh_unfunded),
                 loop("spam_key", 0.0, spam_key), *[fake_node(n) for n in fake_nodes]]
        started = time.monotonic()
        await asyncio.gather(*tasks)
        results["seconds"] = round(time.monotonic() - started, 2)
        results["spam_key_posts_accepted"] = spam_posts[0]
        for n in [spammer, *fake_nodes]:
            await n.aclose()
    results["codes"] = {k: dict(sorted(v.items())) for k, v in codes.items()}


def attacker(url: str, spam_kp: bytes, duration: float, queue: Any) -> None:
    results: dict[str, Any] = {}
    asyncio.run(_attack(url, spam_kp, duration, results))
    queue.put(results)


# ----------------------------------------------------------- the cost of a refused request


def refused_request_cost(n: int = 20_000) -> dict[str, float]:
    """µs per request the budget middleware refuses (429), in process, against the same
    middleware passing a request through to a trivial app."""
    from nosgrid.coordinator.app import _render_refusal
    from nosgrid.coordinator.limits import Budgets, RequestBudgets
    from nosgrid.core.budgets import BudgetParams, Rate

    async def trivial(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def run(budgets: BudgetParams) -> float:
        door = Budgets(trivial, RequestBudgets(budgets, lambda key: None), _render_refusal)
        scope = {"type": "http", "method": "POST", "path": "/v1/jobs", "query_string": b"",
                 "headers": [(HEADER_PUBKEY.encode(), str(Keypair().pubkey()).encode()),
                             (b"x-nosgrid-timestamp", b"1")], "client": ("10.0.0.1", 1)}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            return None

        for _ in range(100):
            await door(scope, receive, send)
        t0 = time.perf_counter()
        for _ in range(n):
            await door(scope, receive, send)
        return (time.perf_counter() - t0) / n * 1e6

    refused = asyncio.run(run(BudgetParams(anonymous=Rate(0.0, 0.0))))
    passed = asyncio.run(run(BudgetParams(anonymous=Rate(1e12, 1e12))))
    return {"refused_us": round(refused, 2), "passed_to_trivial_app_us": round(passed, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=15)
    ap.add_argument("--flood-s", type=float, default=20.0)
    args = ap.parse_args()
    build_test_images(if_missing=True, names=(BUSYBOX_IMAGE,))
    with tempfile.TemporaryDirectory(prefix="nosgrid-bench-flood-") as tmp:
        root = Path(tmp)
        stack = Stack(root / "up", nodes=1, port=0)
        try:
            stack.start()
            stack.wait_nodes()
            coordinator_pid = stack.procs[0].pid
            spam_kp = Keypair()
            with Client(stack.url, stack.admin) as admin:
                admin.create_market(SPAM_MARKET)
            with Client(stack.url, spam_kp) as spam:
                spam.faucet("100")
            with Client(stack.url, _keypair(root / "client.json")) as c:
                c.faucet("100")
                honest_round(c, 2)  # warm up
                calm = honest_round(c, args.jobs)
                rss_before = rss_kb(coordinator_pid)
                queue: Any = multiprocessing.get_context("spawn").Queue()
                proc = multiprocessing.get_context("spawn").Process(
                    target=attacker, args=(stack.url, bytes(spam_kp), args.flood_s, queue))
                proc.start()
                time.sleep(2.0)  # the attack is under way (fake nodes registered)
                honest_failed = 0
                flooded: list[float] = []
                end = time.monotonic() + args.flood_s - 3
                while len(flooded) < args.jobs and time.monotonic() < end:
                    try:
                        flooded += honest_round(c, 1)
                    except Exception:
                        honest_failed += 1
                attack = queue.get(timeout=args.flood_s + 120)
                proc.join(30)
                rss_after = rss_kb(coordinator_pid)
                verify = c.ledger_verify()
        finally:
            stack.stop()
    five_xx = sum(n for codes in attack["codes"].values() for s, n in codes.items()
                  if int(s) >= 500)
    spam_rate = DEFAULT_BUDGETS.keyed["post"]
    spam_budget = spam_rate.burst + spam_rate.per_second * attack["seconds"]
    cost = refused_request_cost()
    print(json.dumps({
        "benchmark": "flood",
        "honest_jobs": {"calm": len(calm), "flooded": len(flooded), "failed": honest_failed},
        "honest_post_to_assigned_ms": {
            "calm_p50": round(statistics.median(calm), 2), "calm_p99": pct(calm, 0.99),
            "flooded_p50": round(statistics.median(flooded), 2) if flooded else None,
            "flooded_p99": pct(flooded, 0.99) if flooded else None},
        "ratio_p99_flooded_vs_calm": round(pct(flooded, 0.99) / pct(calm, 0.99), 3)
        if flooded else None,
        "attack_seconds": attack["seconds"],
        "requests_by_attack": {k: sum(v.values()) for k, v in attack["codes"].items()},
        "status_codes_by_attack": attack["codes"],
        "server_5xx": five_xx,
        "coordinator_rss_kb": {"before": rss_before, "after": rss_after},
        "refused_request_cost": cost,
        "spam_key": {"posts_accepted": attack["spam_key_posts_accepted"],
                     "budget_burst_plus_rate_x_time": round(spam_budget, 1)},
        "ledger_verify_ok": verify.ok,
    }, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
