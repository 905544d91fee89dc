"""Settlement throughput and latency on LiteSVM, against a bare transfer+memo baseline (JSON).

Run: ``.venv/bin/python bench/settlement.py [--jobs 2000] [--clients 16] [--nodes 16]``.

LiteSVM executes a transaction synchronously inside ``send_transaction``: there are no
slots, no leader, no gossip and no confirmation wait. "Latency to confirmed" is therefore
the time from the call (job completed) until ``confirmed(signature)`` is true, i.e. nosgrid's
own overhead (pre-flight reads, building, signing, executing); on a real cluster add the
slot time (~400 ms to "confirmed", ~13 s to "finalized").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from typing import Any

from solders.keypair import Keypair
from solders.message import Message
from solders.transaction import Transaction

from nosgrid.settlement import spl
from nosgrid.settlement.litesvm_chain import LiteSVMChain
from nosgrid.settlement.solana import SettlementRequest, SolanaSettlement

NOS = 1_000_000
ENTRY_HASH = "5f" * 32


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _market(
    clients: int, nodes: int
) -> tuple[LiteSVMChain, SolanaSettlement, list[str], list[str]]:
    chain = LiteSVMChain()
    authority = Keypair()
    await chain.airdrop_sol(authority.pubkey(), 10_000 * 10**9)
    backend = await SolanaSettlement.bootstrap(chain, authority)
    client_ids: list[str] = []
    for _ in range(clients):
        client = Keypair()
        await backend.faucet(str(client.pubkey()), 1_000_000 * NOS)
        await backend.approve(client, 1_000_000 * NOS, fee_payer=authority)
        client_ids.append(str(client.pubkey()))
    node_ids = [str(Keypair().pubkey()) for _ in range(nodes)]
    for node in node_ids:
        await backend.ensure_account(node)
    return chain, backend, client_ids, node_ids


def _legs(backend: SolanaSettlement, node: str, i: int) -> tuple[tuple[str, int], ...]:
    return (
        (node, 900_000 + i % 1000),
        (str(backend.treasury), 50_000),
        (str(backend.rewards_vault), 50_000),
    )


def _baseline(jobs: int) -> dict[str, Any]:
    """Bare LiteSVM: one prebuilt-style transfer_checked + memo per transaction, no checks."""
    chain = LiteSVMChain()
    svm = chain.svm
    payer, client, node = Keypair(), Keypair(), Keypair()
    svm.airdrop(payer.pubkey(), 10**12)
    mint = asyncio.run(chain.create_mint(payer))
    source = asyncio.run(chain.create_ata(client.pubkey(), mint, payer))
    dest = asyncio.run(chain.create_ata(node.pubkey(), mint, payer))
    asyncio.run(chain.mint_to(mint, source, 10**12, payer))
    start = time.perf_counter()
    for i in range(jobs):
        ixs = [
            spl._transfer(source, dest, mint, client.pubkey(), 1, spl.DECIMALS),
            spl.memo_instruction(f"bench {i}"),
        ]
        blockhash = svm.latest_blockhash()
        tx = Transaction(
            [payer, client], Message.new_with_blockhash(ixs, payer.pubkey(), blockhash), blockhash
        )
        result = svm.send_transaction(tx)
        if not hasattr(result, "logs"):
            raise RuntimeError(f"baseline transfer failed: {result}")
    elapsed = time.perf_counter() - start
    return {"tx_per_s": round(jobs / elapsed, 1), "jobs": jobs}


async def _single(jobs: int, clients: int, nodes: int) -> dict[str, Any]:
    chain, backend, client_ids, node_ids = await _market(clients, nodes)
    latencies: list[float] = []
    start = time.perf_counter()
    for i in range(jobs):
        t0 = time.perf_counter()
        signature = await backend.settle(
            f"job-{i}",
            ENTRY_HASH,
            _legs(backend, node_ids[i % nodes], i),
            client=client_ids[i % clients],
        )
        if not await chain.confirmed(signature):
            raise RuntimeError(f"settlement {signature} not confirmed")
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    one = await backend._build_job(
        SettlementRequest("job-0", ENTRY_HASH, _legs(backend, node_ids[0], 0), client_ids[0])
    )
    return {
        "jobs": jobs,
        "jobs_per_s": round(jobs / elapsed, 1),
        "tx_bytes": spl.transaction_size(spl.settle_job_instructions(one), backend.authority),
        "latency_ms": {
            "p50": round(1000 * statistics.median(latencies), 3),
            "p99": round(1000 * _percentile(latencies, 0.99), 3),
            "max": round(1000 * max(latencies), 3),
        },
    }


async def _batched(jobs: int, per_call: int, clients: int, nodes: int) -> dict[str, Any]:
    chain, backend, client_ids, node_ids = await _market(clients, nodes)
    requests = [
        SettlementRequest(
            f"job-{i}", ENTRY_HASH, _legs(backend, node_ids[i % nodes], i), client_ids[i % clients]
        )
        for i in range(jobs)
    ]
    latencies: list[float] = []
    signatures: set[str] = set()
    start = time.perf_counter()
    for offset in range(0, jobs, per_call):
        t0 = time.perf_counter()
        settled = await backend.settle_batch(requests[offset : offset + per_call])
        for signature in set(settled.values()):
            if not await chain.confirmed(signature):
                raise RuntimeError(f"settlement {signature} not confirmed")
        latencies.append(time.perf_counter() - t0)
        signatures.update(settled.values())
    elapsed = time.perf_counter() - start
    jobs_built = [await backend._build_job(r) for r in requests[:per_call]]
    packed = spl.batch_payout_instructions(jobs_built, backend.authority)
    return {
        "jobs": jobs,
        "jobs_per_call": per_call,
        "transactions": len(signatures),
        "jobs_per_tx": round(jobs / len(signatures), 2),
        "jobs_per_s": round(jobs / elapsed, 1),
        "max_tx_bytes": max(spl.transaction_size(ixs, backend.authority) for _, ixs in packed),
        "call_latency_ms_p50": round(1000 * statistics.median(latencies), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--nodes", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    baseline = _baseline(args.jobs)
    single = asyncio.run(_single(args.jobs, args.clients, args.nodes))
    batched_distinct = asyncio.run(_batched(args.jobs, 50, args.clients, args.nodes))
    batched_one_pair = asyncio.run(_batched(args.jobs, 50, 1, 1))
    report = {
        "bench": "settlement",
        "backend": "litesvm (in-process, no slots)",
        "baseline_bare_transfer_memo": baseline,
        "settle_one_job_per_tx": single,
        "settle_batch_distinct_parties": batched_distinct,
        "settle_batch_one_client_one_node": batched_one_pair,
        "ratios": {
            "single_vs_baseline": round(single["jobs_per_s"] / baseline["tx_per_s"], 3),
            "batched_vs_single": round(batched_distinct["jobs_per_s"] / single["jobs_per_s"], 3),
        },
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
