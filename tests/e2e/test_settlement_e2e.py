"""`--settlement litesvm` end to end: a real coordinator process holding an in-process
Solana, the CLI (faucet mints on chain, `wallet approve` signs locally and is relayed), a
scripted node, real SPL transfers checked against the ledger, `ledger verify --onchain`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from solders.keypair import Keypair

from conftest import Cli, running_coordinator
from nosgrid.sdk import Client

pytestmark = pytest.mark.e2e

SPEC = {"version": "0.1", "type": "container", "meta": {"nosgrid": {"timeout": 60}},
        "ops": [{"type": "container/run", "id": "hello",
                 "args": {"image": "localhost/nosgrid-busybox:test", "cmd": "echo hi"}}]}


@pytest.fixture
def litesvm_coordinator(tmp_path: Path) -> Iterator[tuple[str, Cli, Path]]:
    with running_coordinator(tmp_path, "--settlement", "litesvm", "--anchor-every", "4") as c:
        yield c


def test_job_paid_in_spl_tokens_end_to_end(
    litesvm_coordinator: tuple[str, Cli, Path], tmp_path: Path
) -> None:
    url, cli, admin = litesvm_coordinator
    me = tmp_path / "me.json"
    cli.run("wallet", "new", "--keypair", str(me))
    cli.run("market", "create", "cpu", "--price-per-second", "0.001", "--max-timeout", "600",
            keypair=admin)
    assert cli.json("faucet", "20", keypair=me)["onchain_balance_nos"] == "20"
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(SPEC))
    refused = cli.run("job", "post", str(spec), "--market", "cpu", keypair=me, check=False)
    assert refused.returncode != 0 and "wallet approve" in refused.stderr + refused.stdout
    approved = cli.json("wallet", "approve", "5", keypair=me)
    assert approved["allowance_nos"] == "5" and approved["free_nos"] == "5"
    job = cli.json("job", "post", str(spec), "--market", "cpu", keypair=me)

    node_kp = Keypair()
    with Client(url, node_kp) as node:
        node.register_node({"cpu_cores": 2, "memory_mb": 2048}, ["cpu"])
        assert node.poll(wait=5).job.id == job["id"]
        node.start_job(job["id"])
        done = node.finish_job(job["id"], seconds_used=3, exit_code=0)
        assert done.state == "settled"
        pay = done.settlement
        deadline = time.monotonic() + 20
        while True:  # the sender pays right after the settle commits
            rows = node.request("GET", f"/v1/solana/payouts/{job['id']}")["payouts"]
            if rows and rows[0]["status"] == "confirmed":
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.05)
        node_chain = node.request("GET", "/v1/solana/account")
    assert node_chain["onchain_balance"] == pay.node_pay  # exactly what the ledger says
    info = httpx.get(f"{url}/v1/solana/info").json()
    report = cli.json("ledger", "verify", "--onchain")
    assert report["ok"], report["problems"]
    treasury = next(r for r in report["accounts_checked"] if r["account"] == "treasury")
    assert treasury["onchain"] == pay.treasury_fee and treasury["ledger"] == pay.treasury_fee
    assert info["treasury"] and report["mint"] == info["mint"]
    mine = cli.json("wallet", "balance", keypair=me)
    cost = pay.node_pay + pay.treasury_fee + pay.stakers_fee
    assert mine["onchain"]["onchain_balance"] == 20_000_000 - cost
    assert mine["onchain"]["allowance"] == 5_000_000 - cost


def test_compute_requested_from_chain_end_to_end(
    litesvm_coordinator: tuple[str, Cli, Path], tmp_path: Path
) -> None:
    """`nosgrid job request`: a transfer + Memo into the request vault (signed by the CLI,
    relayed), read by the coordinator's own watcher loop, run, settled, its receipt naming
    the reply key published on chain; a short payment is refunded with a reason."""
    url, cli, admin = litesvm_coordinator
    me = tmp_path / "me.json"
    pubkey = cli.json("wallet", "new", "--keypair", str(me))["pubkey"]
    cli.run("market", "create", "cpu", "--price-per-second", "0.001", "--max-timeout", "600",
            keypair=admin)
    cli.json("faucet", "20", keypair=me)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(SPEC))
    short = cli.json("job", "request", str(spec), "--pay", "0.001", keypair=me)
    assert short["status"] in ("refunding", "refunded") and "deposit" in short["reason"]
    asked = cli.json("job", "request", str(spec), "--pay", "1", keypair=me)
    assert asked["status"] == "posted" and asked["reply_key"] == pubkey
    job_id = asked["job_id"]
    with Client(url, Keypair()) as node:
        node.register_node({"cpu_cores": 2, "memory_mb": 2048}, ["cpu"])
        assert node.poll(wait=5).job.id == job_id
        node.start_job(job_id)
        assert node.finish_job(job_id, seconds_used=3, exit_code=0).state == "settled"
        deadline = time.monotonic() + 20
        while True:  # the sender publishes the receipt and the refunds
            receipt = cli.json("job", "receipt", job_id)
            view = node.chain_request(asked["signature"])
            if receipt["onchain"] and all(r.onchain for r in view.refunds):
                break
            assert time.monotonic() < deadline, (receipt, view)
            time.sleep(0.3)
    assert receipt["fields"]["reply_key"] == pubkey
    assert [r.reason for r in view.refunds] == ["unused", "unused"]
    assert cli.json("ledger", "verify", "--onchain")["ok"]
