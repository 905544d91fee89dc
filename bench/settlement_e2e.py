"""Settlement through the coordinator on LiteSVM (JSON): jobs settled by the services write
outbox rows; the sender pays them on chain. Measures payouts per second with one job per
transaction and batched, and the latency from ``completed`` (the finish call returning)
to a confirmed SPL transfer, in the same run as a bare transfer+memo baseline.

Run: ``.venv/bin/python bench/settlement_e2e.py [--jobs 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from solders.keypair import Keypair

from nosgrid.coordinator.bootstrap import money_handlers, use_settlement
from nosgrid.coordinator.services import jobs as svc
from nosgrid.core.markets import MarketParams
from nosgrid.settlement import spl
from nosgrid.settlement.mirror import sync_allowance
from nosgrid.settlement.onchain import SolanaBackend
from nosgrid.settlement.sender import Sender
from nosgrid.store.db import Store

NOS = 1_000_000


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def _market(tmp: Path, batch: int) -> tuple[SolanaBackend, Store, list[str], str]:
    backend = await SolanaBackend.litesvm(batch_size=batch)
    raw = Store.open(tmp / f"b{batch}.db")
    await backend.open(raw, 0)
    store = raw
    use_settlement(store, backend)  # what the coordinator's bootstrap wires
    money_handlers(store.handlers)
    s = backend.settlement
    clients = []
    for _ in range(4):
        kp = Keypair()
        await s.faucet(str(kp.pubkey()), 1_000_000 * NOS)
        await s.approve(kp, 1_000_000 * NOS, fee_payer=s.signer)
        clients.append(str(kp.pubkey()))
    node = str(Keypair().pubkey())
    await s.ensure_account(node)
    with store.uow() as uow:
        svc.create_market(uow, MarketParams(name="cpu", price_per_second=1000, max_timeout=600,
                                            fee_bps=500, stakers_share_bps=2000), 0)
        for c in clients:
            sync_allowance(uow, c, await s.allowance(c), 0)
        uow.commit()
    return backend, store, clients, node


def _settle(store: Store, client: str, node: str, i: int) -> None:
    """Post, assign, start and complete one job (it settles in the same transaction)."""
    with store.uow() as uow:
        job = svc.post_job(uow, client=client, market_name="cpu", spec_hash="0" * 64,
                           spec_body="{}", timeout=100, max_price=None, now=i,
                           job_id=f"job-{i}")
        job = svc.record(uow, svc.rules.assign(job, node, i), kind="job.assigned")
        svc.record(uow, svc.rules.start(job, i), kind="job.started")
        uow.commit()
    with store.uow() as uow:
        svc.finish_job(uow, f"job-{i}", node, i + 10, seconds_used=10, result={})
        uow.commit()


async def _run(tmp: Path, jobs: int, batch: int) -> dict[str, Any]:
    backend, store, clients, node = await _market(tmp, batch)
    sender = Sender(store, backend.settlement, batch_size=batch)
    # throughput: settle all, then drain the outbox
    for i in range(jobs):
        _settle(store, clients[i % len(clients)], node, i)
    t0 = time.perf_counter()
    stats = await sender.pass_once(limit=jobs)
    drain = time.perf_counter() - t0
    assert stats.confirmed == jobs, stats
    # latency: completed → confirmed transfer, one job at a time, the sender woken at once
    latencies = []
    for i in range(jobs, jobs + min(200, jobs)):
        t = time.perf_counter()
        _settle(store, clients[i % len(clients)], node, i)
        await sender.pass_once()
        latencies.append((time.perf_counter() - t) * 1000)
    return {"jobs": jobs, "batch_size": batch, "transactions": stats.transactions,
            "jobs_per_tx": round(jobs / stats.transactions, 2),
            "payouts_per_s": round(jobs / drain, 1),
            "completed_to_confirmed_ms": {"p50": _pct(latencies, 0.5),
                                          "p99": _pct(latencies, 0.99),
                                          "mean": round(statistics.mean(latencies), 3)}}


async def _baseline(n: int) -> dict[str, Any]:
    backend = await SolanaBackend.litesvm()
    s = backend.settlement
    payer = s.signer
    client = Keypair()
    await s.faucet(str(client.pubkey()), 10**6 * NOS)
    await s.chain.airdrop_sol(client.pubkey(), 10**9)
    src = spl.ata(client.pubkey(), s.mint)
    t0 = time.perf_counter()
    for i in range(n):
        ixs = [spl._transfer(src, s.treasury, s.mint, client.pubkey(), 1, 6),
               spl.memo_instruction(f"bench {i}")]
        await s.chain.send(ixs, [client], payer)
    return {"tx_per_s": round(n / (time.perf_counter() - t0), 1)}


async def main(jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        base = await _baseline(jobs)
        single = await _run(Path(tmp), jobs, 1)
        batched = await _run(Path(tmp), jobs, 16)
    return {"device": "LiteSVM in-process, SQLite WAL",
            "baseline_bare_transfer_memo": base,
            "coordinator_one_job_per_tx": single,
            "coordinator_batched": batched,
            "ratios": {"single_vs_baseline": round(single["payouts_per_s"] / base["tx_per_s"], 3),
                       "batched_vs_single": round(batched["payouts_per_s"]
                                                  / single["payouts_per_s"], 3)}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(main(args.jobs)), indent=1))
