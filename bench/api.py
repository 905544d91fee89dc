"""Coordinator API throughput and post→node latency, next to the bare service layer.

Prints one JSON object:

* ``lifecycles``: complete job lifecycles per second (post → poll/assign → start →
  finish, which settles) done (a) directly with the service functions, one
  ``store.uow()`` per use case as the routes do, (b) through the API in-process over
  ``httpx.ASGITransport``, (c) through a real uvicorn on 127.0.0.1 (a subprocess, so the
  server and the load generator each get a core). Each worker has its own client key,
  node key and market, so no worker's node steals another's job.
* ``post_to_node_latency_ms``: a node long-polls in a loop over real uvicorn; a client
  posts one job after the other once the node is seen waiting; latency is from just
  before the POST to the node's poll returning with the job.
* ``profile_top``: the costliest functions of the in-process API lifecycle (cProfile).

Usage: ``python bench/api.py [--lifecycles N] [--workers C] [--latency-jobs N]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.bootstrap import open_store
from nosgrid.coordinator.services import accounts
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.services import nodes as node_services
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.jobs.load import parse_job_definition
from nosgrid.core.markets import HardwareReport, parse_market_params
from nosgrid.core.money import BASE_UNITS_PER_NOS
from nosgrid.sdk.client import AsyncClient

SPEC = {"version": "0.1", "type": "container",
        "ops": [{"type": "container/run", "id": "a", "args": {"image": "busybox", "cmd": "true"}}]}
HW = {"cpu_cores": 2, "memory_mb": 4096}
MARKET = {"price_per_second": 1, "max_timeout": 600, "fee_bps": 500}


def settings_for(data_dir: Path, admin: str) -> CoordinatorSettings:
    return CoordinatorSettings(db=str(data_dir / "c.db"), data_dir=data_dir,
                               admin_keys=frozenset({admin}), faucet=True)


# -- (a) the service layer directly ----------------------------------------------------------


def direct_lifecycles(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "c.db")  # the use cases with their money handlers
        client, node = str(Keypair().pubkey()), str(Keypair().pubkey())
        now = int(time.time())
        with store.uow() as uow:
            job_services.create_market(uow, parse_market_params({"name": "m0", **MARKET}), now)
            accounts.faucet(uow, client, 1000 * BASE_UNITS_PER_NOS, now)
            node_services.register(uow, node, HardwareReport(**HW), ["m0"], now)
            uow.commit()
        defn = parse_job_definition(SPEC)  # validated once, as the route does per request
        t0 = time.perf_counter()
        for _ in range(n):
            with store.uow() as uow:
                job = job_services.post_job(uow, client=client, definition=defn, market="m0",
                                            timeout=10, now=now)
                uow.commit()
            with store.uow() as uow:
                got = node_services.take_work(uow, node, now)
                uow.commit()
            assert got is not None and got.id == job.id
            with store.uow() as uow:
                job_services.start_job(uow, job.id, node, now)
                uow.commit()
            with store.uow() as uow:
                done = job_services.finish_job(uow, job.id, node, now, seconds_used=1,
                                               result={"exit_code": 0})
                uow.commit()
            assert done.state.value == "settled"
        elapsed = time.perf_counter() - t0
        store.close()
    return {"lifecycles": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 1),
            "concurrency": 1}


# -- (b), (c) through the API ------------------------------------------------------------


async def setup_workers(make: Any, admin: AsyncClient, workers: int) -> list[tuple[Any, Any]]:
    pairs = []
    for i in range(workers):
        client, node = make(Keypair()), make(Keypair())
        await admin.create_market({"name": f"m{i}", **MARKET})
        await client.faucet("1000")
        await node.register_node(HW, [f"m{i}"])
        pairs.append((client, node))
    return pairs


async def api_lifecycles(pairs: list[tuple[Any, Any]], n: int) -> dict[str, Any]:
    per_worker = n // len(pairs)

    async def worker(i: int, client: AsyncClient, node: AsyncClient) -> None:
        for _ in range(per_worker):
            job = await client.post_job(spec=SPEC, market=f"m{i}", timeout=10)
            got = await node.poll(wait=0)
            assert got.job is not None and got.job.id == job.id, got
            await node.start_job(job.id)
            done = await node.finish_job(job.id, seconds_used=1)
            assert done.state == "settled"

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i, c, nd) for i, (c, nd) in enumerate(pairs)))
    elapsed = time.perf_counter() - t0
    total = per_worker * len(pairs)
    return {"lifecycles": total, "seconds": round(elapsed, 3), "per_s": round(total / elapsed, 1),
            "concurrency": len(pairs), "requests_per_lifecycle": 4}


async def inprocess(n: int, workers: int, profile: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        admin_kp = Keypair()
        app = create_app(settings_for(Path(tmp), str(admin_kp.pubkey())), background=False)
        transport = httpx.ASGITransport(app=app)

        def make(kp: Keypair) -> AsyncClient:
            return AsyncClient("http://coordinator", kp, transport=transport)

        admin = make(admin_kp)
        pairs = await setup_workers(make, admin, workers)
        result = await api_lifecycles(pairs, n)
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            await api_lifecycles(pairs, max(workers, n // 4))
            prof.disable()
            result["profile_top"] = top_costs(prof)
        for c in [admin, *(x for p in pairs for x in p)]:
            await c.aclose()
    return result


def top_costs(prof: cProfile.Profile, k: int = 18) -> list[str]:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(k)
    lines = [ln.strip() for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("ncalls"))
    return lines[start + 1:start + 1 + k]


# -- real uvicorn ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, data_dir: str, admin: str) -> None:
    import uvicorn

    app = create_app(settings_for(Path(data_dir), admin), background=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.admin = Keypair()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), self.tmp.name,
             str(self.admin.pubkey())], env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("uvicorn did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.tmp.cleanup()


async def over_uvicorn(n: int, workers: int) -> dict[str, Any]:
    server = Server()
    try:
        def make(kp: Keypair) -> AsyncClient:
            return AsyncClient(server.url, kp)

        admin = make(server.admin)
        pairs = await setup_workers(make, admin, workers)
        result = await api_lifecycles(pairs, n)
        for c in [admin, *(x for p in pairs for x in p)]:
            await c.aclose()
        return result
    finally:
        server.close()


async def latency(jobs: int) -> dict[str, Any]:
    server = Server()
    try:
        admin, client, node = (AsyncClient(server.url, kp)
                               for kp in (server.admin, Keypair(), Keypair()))
        await admin.create_market({"name": "lat", **MARKET})
        await client.faucet("1000")
        await node.register_node(HW, ["lat"])
        returned: asyncio.Queue[tuple[float, str]] = asyncio.Queue()

        async def node_loop() -> None:
            while True:
                got = await node.poll(wait=25)
                t1 = time.perf_counter()
                if got.job is None:
                    continue
                await returned.put((t1, got.job.id))
                await node.start_job(got.job.id)
                await node.finish_job(got.job.id, seconds_used=1)

        task = asyncio.create_task(node_loop())
        samples = []
        for _ in range(jobs):
            while (await client.market("lat")).nodes_waiting < 1:
                await asyncio.sleep(0.0005)
            t0 = time.perf_counter()
            job = await client.post_job(spec=SPEC, market="lat", timeout=10)
            t1, job_id = await returned.get()
            assert job_id == job.id
            samples.append((t1 - t0) * 1000)
        task.cancel()
        for c in (admin, client, node):
            await c.aclose()
    finally:
        server.close()
    samples.sort()
    return {"jobs": jobs, "p50": round(statistics.median(samples), 2),
            "p90": round(samples[int(0.90 * len(samples)) - 1], 2),
            "p99": round(samples[int(0.99 * len(samples)) - 1], 2),
            "max": round(samples[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lifecycles", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--latency-jobs", type=int, default=1000)
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "DIR", "ADMIN"))
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2])
        return
    direct = direct_lifecycles(args.lifecycles)
    inproc = asyncio.run(inprocess(args.lifecycles, args.workers, profile=True))
    profile = inproc.pop("profile_top")
    uv = asyncio.run(over_uvicorn(args.lifecycles, args.workers))
    lat = asyncio.run(latency(args.latency_jobs))
    print(json.dumps({
        "bench": "api",
        "cpu_count": os.cpu_count(),
        "lifecycles": {"direct_service_layer": direct, "api_inprocess_asgi": inproc,
                       "api_uvicorn": uv},
        "ratios": {"inprocess_vs_direct": round(inproc["per_s"] / direct["per_s"], 3),
                   "uvicorn_vs_direct": round(uv["per_s"] / direct["per_s"], 3)},
        "post_to_node_latency_ms": lat,
        "targets": {"lifecycles_per_s_api": 1000, "latency_p50_ms": 10, "latency_p99_ms": 50},
        "profile_top": profile,
    }, indent=1))


if __name__ == "__main__":
    main()
