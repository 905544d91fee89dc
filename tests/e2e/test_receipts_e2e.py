"""Receipts as a user reads them: a real uvicorn coordinator, the CLI, a scripted node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from solders.keypair import Keypair

from conftest import Cli
from nosgrid.core.receipts import Verdict, job_digest
from nosgrid.sdk import Client, verify_receipt

pytestmark = pytest.mark.e2e

SPEC = {"version": "0.1", "type": "container", "meta": {"nosgrid": {"timeout": 60}},
        "ops": [{"type": "container/run", "id": "hello",
                 "args": {"image": "localhost/nosgrid-busybox:test", "cmd": "echo hi"}}]}


def _settled_job(url: str, cli: Cli, admin: Path, tmp_path: Path) -> tuple[str, Path]:
    me = tmp_path / "me.json"
    cli.run("wallet", "new", "--keypair", str(me))
    cli.run("market", "create", "cpu", "--price-per-second", "0.001", "--max-timeout", "600",
            keypair=admin)
    cli.json("faucet", "5", keypair=me)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(SPEC))
    job = cli.json("job", "post", str(spec), "--market", "cpu", keypair=me)
    with Client(url, Keypair()) as node:
        node.register_node({"cpu_cores": 2, "memory_mb": 2048}, ["cpu"])
        assert node.poll(wait=5).job.id == job["id"]
        node.start_job(job["id"])
        node.finish_job(job["id"], seconds_used=1, outputs=[])
    return str(job["id"]), me


def test_job_receipt_json_raw_and_rotation(coordinator: tuple[str, Cli, Path],
                                           tmp_path: Path) -> None:
    url, cli, admin = coordinator
    job_id, _me = _settled_job(url, cli, admin, tmp_path)
    shown = cli.json("job", "receipt", job_id)  # no keypair needed: receipts are public
    assert shown["verdict"] == "settled" and shown["verified_by"] == shown["attestor"]
    assert shown["fields"]["job"] == job_digest(job_id).hex()
    raw = bytes.fromhex(cli.run("job", "receipt", job_id, "--raw").stdout.strip())
    assert verify_receipt(raw, shown["attestor"]).verdict is Verdict.SETTLED
    table = cli.run("job", "receipt", job_id).stdout
    assert "signature valid" in table and "settled" in table

    rotated = cli.json("attestor", "rotate", keypair=admin)
    assert rotated["epoch"] == 1 and rotated["signature"]
    chain = cli.json("attestor", "show", "--first", shown["attestor"])
    assert chain["verified"] and chain["current"]["key"] == rotated["key"]
    # an old receipt still verifies, through the chain, with its own epoch's key
    assert cli.json("job", "receipt", job_id)["verified_by"] == shown["attestor"]


def test_receipt_errors_are_one_line(coordinator: tuple[str, Cli, Path],
                                     tmp_path: Path) -> None:
    url, cli, admin = coordinator
    job_id, me = _settled_job(url, cli, admin, tmp_path)
    missing = cli.run("job", "receipt", "no-such-job", check=False)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "no job" in missing.stderr
    stranger = cli.run("job", "receipt", job_id, "--attestor", str(Keypair().pubkey()),
                       check=False)
    assert stranger.returncode == 1 and "attestor" in stranger.stderr
    refused = cli.run("attestor", "rotate", keypair=me, check=False)
    assert refused.returncode == 1 and "admin" in refused.stderr
