"""Dashboard pages against the JSON API for the same data: server-side render time, p50.

Seeds one SQLite database through the real use cases (1,000 registered nodes with
heartbeats, 10,000 jobs of which 8,000 ran and settled on those nodes and 2,000 wait in
the queue), then times, in-process over ``httpx.ASGITransport``, each page next to the
JSON routes that answer its figures (``json``: their p50s summed, as a client of the API
would fetch them one after the other):

* market page ``/markets/cpu`` ↔ ``/v1/markets/cpu`` + ``/stats`` + ``/nodes``
* node page ``/nodes/{id}`` ↔ ``/v1/nodes/{id}`` + ``/v1/nodes/{id}/stats``
* ledger page ``/ledger`` ↔ ``/v1/ledger/summary`` + ``/entries`` (50) + ``/accounts`` (25)
* node list ``/nodes`` ↔ ``/v1/nodes`` (the first 100 of the 1,000; the standings of all
  are read to sort them)

``ratio`` = page p50 ÷ json p50: the cost of rendering HTML over answering JSON.

Usage: ``python bench/dashboard.py [--jobs N] [--nodes N] [--repeat N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.services import accounts
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.services import nodes as node_services
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.budgets import UNLIMITED
from nosgrid.core.jobs.load import parse_job_definition
from nosgrid.core.markets import HardwareReport, parse_market_params
from nosgrid.core.money import BASE_UNITS_PER_NOS

SPEC = {"version": "0.1", "type": "container",
        "ops": [{"type": "container/run", "id": "a", "args": {"image": "busybox", "cmd": "true"}}]}
HW = HardwareReport(cpu_cores=4, memory_mb=8192)


def seed(coord: Any, n_jobs: int, n_nodes: int, now: int) -> list[str]:
    """Nodes, clients and jobs through the use cases; returns the node ids."""
    store = coord.store
    nodes = [str(Keypair().pubkey()) for _ in range(n_nodes)]
    clients = [str(Keypair().pubkey()) for _ in range(50)]
    with store.uow() as uow:
        job_services.create_market(uow, parse_market_params(
            {"name": "cpu", "price_per_second": 10, "max_timeout": 600, "fee_bps": 500}), now)
        for c in clients:
            accounts.faucet(uow, c, 10_000 * BASE_UNITS_PER_NOS, now - 7200,
                            cap_per_hour=10**18)
        for i, n in enumerate(nodes):
            node_services.register(uow, n, HW, ["cpu"], now - 3600 - i)
        uow.commit()
    with store.uow() as uow:  # a few heartbeats each: uptime rows
        for n in nodes:
            for k in range(3):
                node_services.heartbeat(uow, n, now - 30 + 10 * k)
        uow.commit()
    defn = parse_job_definition(SPEC)
    ran = n_jobs * 8 // 10
    for start in range(0, n_jobs, 500):
        with store.uow() as uow:
            for i in range(start, min(n_jobs, start + 500)):
                job = job_services.post_job(uow, client=clients[i % len(clients)],
                                            definition=defn, market="cpu", timeout=60,
                                            now=now - 600)
                if i >= ran:
                    continue
                node = nodes[i % len(nodes)]
                got = node_services.take_work(uow, node, now - 500)
                assert got is not None and got.id == job.id
                job_services.start_job(uow, job.id, node, now - 500)
                job_services.finish_job(uow, job.id, node, now - 400 + i % 300,
                                        seconds_used=1 + i % 50, result={"exit_code": 0})
            uow.commit()
    return nodes


async def p50_ms(web: httpx.AsyncClient, path: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = await web.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return statistics.median(times)


async def measure(n_jobs: int, n_nodes: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = CoordinatorSettings(db=str(Path(tmp) / "c.db"), data_dir=Path(tmp),
                                       budgets=UNLIMITED)
        app = create_app(settings, background=False)
        coord = app.state.coordinator
        now = int(time.time())
        t0 = time.perf_counter()
        nodes = seed(coord, n_jobs, n_nodes, now)
        seeded_s = time.perf_counter() - t0
        node = nodes[0]
        with coord.store.uow(write=False) as uow:
            head = uow.ledger.head()
        entries = (head[0] + 1) if head else 0
        pairs = {
            "market": ("/markets/cpu", ["/v1/markets/cpu", "/v1/markets/cpu/stats",
                                        "/v1/markets/cpu/nodes"]),
            "node": (f"/nodes/{node}", [f"/v1/nodes/{node}", f"/v1/nodes/{node}/stats"]),
            "ledger": ("/ledger", ["/v1/ledger/summary",
                                   f"/v1/ledger/entries?from_seq={max(0, entries - 50)}"
                                   "&limit=50", "/v1/ledger/accounts?limit=25"]),
            "node_list": ("/nodes", ["/v1/nodes"]),
        }
        out: dict[str, Any] = {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as web:
            for name, (page, routes) in pairs.items():
                await p50_ms(web, page, 2)  # warm: templates compiled, caches filled
                page_ms = await p50_ms(web, page, repeat)
                json_ms = sum([await p50_ms(web, r, repeat) for r in routes])
                out[name] = {"page_p50_ms": round(page_ms, 2), "json_p50_ms": round(json_ms, 2),
                             "ratio": round(page_ms / json_ms, 2) if json_ms else None,
                             "json_routes": routes}
        with coord.store.uow(write=False) as uow:
            counts = uow.jobs.count_by_state()
    return {"jobs": n_jobs, "nodes": n_nodes, "journal_entries": entries,
            "jobs_by_state": counts, "seed_s": round(seeded_s, 1), "repeat": repeat,
            "pages": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--nodes", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=21)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(measure(args.jobs, args.nodes, args.repeat)), indent=2))


if __name__ == "__main__":
    main()
