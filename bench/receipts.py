"""Receipts issued and published on LiteSVM, against bare signature-check + Memo transactions
in the same run (JSON).

Run: ``.venv/bin/python bench/receipts.py [--receipts 400] [--latency-samples 100]``.

* **baseline**: pre-signed receipts sent as bare ``[Ed25519 check, Memo]`` transactions,
  one receipt each, straight into ``LiteSVM.send_transaction`` (no nosgrid code, no
  database);
* **nosgrid**: what a coordinator does per receipt — sign it with the attestor key and
  store it with its outbox row in a SQLite (WAL) transaction (the ``JobSettled`` handler's
  work) — and then the outbox sender publishing them packed two per transaction, each
  batch recorded ``sent`` before submitting and ``confirmed`` after;
* **latency**: from the commit of the transaction that issued a receipt until the sender
  has it confirmed on chain, one at a time; and the real path, from a job's completion
  (which settles it and issues its receipt in the same transaction) until its receipt is
  confirmed, the payout sent in the same sender pass (p50, p99).

LiteSVM executes a transaction synchronously: no slots pass, so "confirmed" is nosgrid's
own overhead; on a real cluster add the slot time (~400 ms to confirmed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from solders.keypair import Keypair
from solders.message import Message
from solders.transaction import Transaction

from nosgrid.coordinator.attestor_keys import AttestorKeys
from nosgrid.coordinator.bootstrap import open_store
from nosgrid.coordinator.services import jobs as svc
from nosgrid.coordinator.services.receipts import ReceiptIssuer
from nosgrid.core import receipts as layout
from nosgrid.core.jobs.load import load_job_definition
from nosgrid.core.jobs.state import Job, JobState, Outcome
from nosgrid.core.markets import MarketParams
from nosgrid.settlement import receipts as receipt_tx
from nosgrid.settlement.mirror import sync_allowance
from nosgrid.settlement.onchain import SolanaBackend
from nosgrid.settlement.sender import Sender


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _job(i: int) -> Job:
    return Job(f"bench-{i:08d}", "client", "cpu", "ab" * 32, 60, 60_000, 1_000, 500,
               state=JobState.SETTLED, node="node", seconds_used=10,
               result={"exit_code": 0, "outputs": [{"path": "/out", "sha256": f"{i:064x}"}]},
               outcome=Outcome.COMPLETED)


def baseline(n: int) -> dict[str, Any]:
    """Bare signature-check + Memo transactions, one receipt each."""
    backend = asyncio.run(SolanaBackend.litesvm())
    chain = backend.settlement.chain
    svm = chain.svm  # type: ignore[attr-defined]
    payer, attestor = backend.settlement.signer, Keypair()
    signed = [layout.sign(layout.Receipt(
        verdict=layout.Verdict.SETTLED, epoch=0, seq=i, slot=0,
        market=layout.market_digest("cpu"), job=layout.job_digest(f"b{i}"),
        definition=bytes(32), result=bytes(32)), attestor) for i in range(n)]
    blockhash = svm.latest_blockhash()
    txs = [Transaction([payer], Message.new_with_blockhash(
        receipt_tx.batch_instructions([s]), payer.pubkey(), blockhash), blockhash)
        for s in signed]
    start = time.perf_counter()
    for t in txs:
        result = svm.send_transaction(t)
        if hasattr(result, "err"):
            raise SystemExit(f"baseline transaction failed: {result}")
    elapsed = time.perf_counter() - start
    return {"receipts": n, "seconds": round(elapsed, 4),
            "receipts_per_s": round(n / elapsed, 1)}


async def _market(tmp: Path) -> tuple[Any, ReceiptIssuer, Sender]:
    backend = await SolanaBackend.litesvm(publish_receipts=True)
    issuer = ReceiptIssuer(AttestorKeys(tmp / "attestor"), slot=backend.observed_slot)
    store = open_store(tmp / "bench.db", settlement=backend, receipts=issuer)
    await backend.open(store, int(time.time()))
    sender = Sender(store, backend.settlement, retry_after_s=0)
    return store, issuer, sender


def _issue(store: Any, issuer: ReceiptIssuer, job: Job, seq: int) -> None:
    with store.uow() as uow:
        issuer.issue(uow, job, layout.Verdict.SETTLED, seq, int(time.time()))
        uow.commit()


async def nosgrid_run(n: int, tmp: Path) -> dict[str, Any]:
    store, issuer, sender = await _market(tmp)
    _issue(store, issuer, _job(-1), 0)  # epoch 0 recorded and published before timing
    await sender.pass_once()
    start = time.perf_counter()
    for i in range(n):
        _issue(store, issuer, _job(i), i + 1)
    issued = time.perf_counter()
    published = 0
    transactions = 0
    while published < n:
        stats = await sender.pass_once(limit=1000)
        if stats.errors:
            raise SystemExit(f"sender failed: {stats.errors[:3]}")
        published += stats.receipts
        transactions += stats.transactions
    done = time.perf_counter()
    return {"receipts": n, "transactions": transactions,
            "issue_seconds": round(issued - start, 4),
            "publish_seconds": round(done - issued, 4),
            "issued_per_s": round(n / (issued - start), 1),
            "published_per_s": round(n / (done - issued), 1),
            "issued_and_published_per_s": round(n / (done - start), 1)}


async def latency(samples: int, tmp: Path) -> dict[str, Any]:
    store, issuer, sender = await _market(tmp)
    _issue(store, issuer, _job(-1), 0)
    await sender.pass_once()
    waits: list[float] = []
    for i in range(samples):
        start = time.perf_counter()
        _issue(store, issuer, _job(i), i + 1)  # the settling transaction commits here
        stats = await sender.pass_once()  # woken by ReceiptIssued, as in the coordinator
        if stats.receipts != 1:
            raise SystemExit(f"expected one receipt published, got {stats}")
        waits.append(time.perf_counter() - start)
    ms = [w * 1000 for w in waits]
    return {"samples": samples, "p50_ms": round(_percentile(ms, 0.5), 3),
            "p99_ms": round(_percentile(ms, 0.99), 3), "mean_ms": round(statistics.mean(ms), 3)}


SPEC = ('{"version":"0.1","type":"container","ops":[{"type":"container/run","id":"m",'
        '"args":{"image":"localhost/nosgrid-busybox:test","cmd":"true"}}]}')


async def latency_via_jobs(samples: int, tmp: Path) -> dict[str, Any]:
    """The real path: a job posted, run and completed through the use cases settles; its
    payout and its receipt go out in the sender pass that the settlement wakes."""
    store, _issuer, sender = await _market(tmp)
    backend = sender.settlement
    client, node = Keypair(), str(Keypair().pubkey())
    await backend.faucet(str(client.pubkey()), 10**12)
    await backend.approve(client, 10**12, fee_payer=backend.signer)
    await backend.ensure_account(node)
    defn = load_job_definition(SPEC)
    with store.uow() as uow:
        svc.create_market(uow, MarketParams(name="cpu", price_per_second=1000,
                                            max_timeout=600, fee_bps=500), 0)
        sync_allowance(uow, str(client.pubkey()), await backend.allowance(
            str(client.pubkey())), 0)
        uow.commit()
    waits: list[float] = []
    for i in range(samples):
        with store.uow() as uow:
            job = svc.post_job(uow, client=str(client.pubkey()), definition=defn, now=i,
                               market="cpu", timeout=100, job_id=f"lat-{i}")
            job = svc.record(uow, svc.rules.assign(job, node, i), kind="job.assigned")
            svc.record(uow, svc.rules.start(job, i), kind="job.started")
            uow.commit()
        start = time.perf_counter()
        with store.uow() as uow:  # completes and settles; the receipt is issued here
            svc.finish_job(uow, f"lat-{i}", node, i + 10, seconds_used=10,
                           result={"exit_code": 0})
            uow.commit()
        stats = await sender.pass_once()
        if stats.receipts != 1 or stats.errors:
            raise SystemExit(f"expected the payout and one receipt, got {stats}")
        waits.append(time.perf_counter() - start)
    ms = [w * 1000 for w in waits]
    return {"samples": samples, "p50_ms": round(_percentile(ms, 0.5), 3),
            "p99_ms": round(_percentile(ms, 0.99), 3), "mean_ms": round(statistics.mean(ms), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--receipts", type=int, default=400)
    parser.add_argument("--latency-samples", type=int, default=100)
    args = parser.parse_args(argv)
    base = baseline(args.receipts)
    with tempfile.TemporaryDirectory() as tmp:
        ours = asyncio.run(nosgrid_run(args.receipts, Path(tmp) / "throughput"))
        lat = asyncio.run(latency(args.latency_samples, Path(tmp) / "latency"))
        via_jobs = asyncio.run(latency_via_jobs(args.latency_samples, Path(tmp) / "jobs"))
    report = {
        "benchmark": "receipts",
        "baseline_bare_sigcheck_memo": base,
        "nosgrid": ours,
        "issue_commit_to_receipt_confirmed": lat,
        "job_settlement_to_receipt_confirmed": via_jobs,
        "ratios": {
            "issued_and_published_vs_bare": round(
                ours["issued_and_published_per_s"] / base["receipts_per_s"], 3),
            "published_vs_bare": round(ours["published_per_s"] / base["receipts_per_s"], 3),
        },
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
