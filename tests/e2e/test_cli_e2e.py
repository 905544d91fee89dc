"""A real uvicorn coordinator, the CLI as a user runs it, and a scripted node (SDK)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from solders.keypair import Keypair

from conftest import Cli, running_coordinator
from nosgrid.sdk import Client

pytestmark = pytest.mark.e2e

SPEC = {"version": "0.1", "type": "container", "meta": {"nosgrid": {"timeout": 60}},
        "ops": [{"type": "container/run", "id": "hello",
                 "args": {"image": "localhost/nosgrid-busybox:test", "cmd": "echo hi"}}]}


def test_client_and_scripted_node(coordinator: tuple[str, Cli, Path], tmp_path: Path) -> None:
    url, cli, admin = coordinator
    me = tmp_path / "me.json"
    cli.run("wallet", "new", "--keypair", str(me))
    cli.run("market", "create", "cpu", "--price-per-second", "0.001", "--max-timeout", "600",
            keypair=admin)
    assert cli.json("market", "list")[0]["name"] == "cpu"
    assert cli.json("faucet", "5", keypair=me)["balance_nos"] == "5"
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(SPEC))
    job = cli.json("job", "post", str(spec), "--market", "cpu", keypair=me)
    assert job["state"] == "queued" and job["deposit_nos"] == "0.06"

    with Client(url, Keypair()) as node:  # a scripted node: the SDK, no containers
        node.register_node({"cpu_cores": 2, "memory_mb": 2048}, ["cpu"])
        got = node.poll(wait=5)
        assert got.job.id == job["id"]
        node.start_job(job["id"])
        sha = node.upload_blob(b"42\n")
        node.push_logs(job["id"], [{"stream": "stdout", "data": "hi\n"}])
        node.finish_job(job["id"], seconds_used=10,
                        outputs=[{"path": "/outputs/answer.txt", "sha256": sha, "size": 3}])

    status = cli.json("job", "status", job["id"], keypair=me)
    # the node claimed 10 s but the job ran for under a second: billed at most wall time + 1
    assert status["state"] == "settled" and status["seconds_used"] <= 2
    cost = status["settlement"]["cost_nos"]
    assert cli.run("job", "logs", job["id"], keypair=me).stdout == "hi\n"
    out = tmp_path / "out"
    cli.run("job", "result", job["id"], "-o", str(out), keypair=me)
    assert (out / "outputs" / "answer.txt").read_text() == "42\n"
    balance = cli.json("wallet", "balance", keypair=me)["balance"]
    assert balance == 5_000_000 - round(float(cost) * 1_000_000)
    assert [j["id"] for j in cli.json("job", "list", keypair=me)["jobs"]] == [job["id"]]
    assert cli.json("ledger", "verify")["ok"]
    assert "ledger ok" in cli.run("ledger", "verify").stdout


def test_cli_errors_are_one_line(coordinator: tuple[str, Cli, Path], tmp_path: Path) -> None:
    _url, cli, _admin = coordinator
    me = tmp_path / "me.json"
    cli.run("wallet", "new", "--keypair", str(me))
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "0.1", "type": "container", "ops": [{"id": 1}]}')
    proc = cli.run("job", "post", str(bad), "--market", "cpu", keypair=me, check=False)
    assert proc.returncode == 1 and "ops[0]" in proc.stderr
    proc = cli.run("faucet", "1.0000001", keypair=me, check=False)
    assert proc.returncode == 1 and "6 decimals" in proc.stderr
    proc = cli.run("job", "status", "nope", keypair=me, check=False)
    assert proc.returncode == 1 and "no job" in proc.stderr
    proc = cli.run("wallet", "balance", keypair=tmp_path / "missing.json", check=False)
    assert proc.returncode == 1 and "nosgrid wallet new" in proc.stderr
    proc = cli.run("market", "create", "x", "--price-per-second", "1", keypair=me, check=False)
    assert proc.returncode == 1 and "admin" in proc.stderr


def test_post_without_market_goes_to_the_definitions_or_the_only_one(
        coordinator: tuple[str, Cli, Path], tmp_path: Path) -> None:
    _url, cli, admin = coordinator
    me = tmp_path / "me.json"
    cli.run("wallet", "new", "--keypair", str(me))
    cli.json("faucet", "5", keypair=me)
    cli.run("market", "create", "cpu", "--price-per-second", "0.001", "--max-timeout", "600",
            keypair=admin)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(SPEC))
    said = " ".join(cli.run("job", "post", str(spec), keypair=me).stdout.split())
    assert " in cpu (the only market), escrowed 0.06 NOS" in said
    job = cli.json("job", "post", str(spec), keypair=me)
    assert (job["market"], job["market_chosen_by"]) == ("cpu", "only")

    cli.run("market", "create", "gpu", "--price-per-second", "0.001", keypair=admin)
    proc = cli.run("job", "post", str(spec), keypair=me, check=False)
    assert proc.returncode == 1 and "(cpu, gpu)" in proc.stderr and "--market" in proc.stderr
    named = tmp_path / "named.json"
    named.write_text(json.dumps({**SPEC, "meta": {"nosgrid": {"timeout": 60, "market": "gpu"}}}))
    said = " ".join(cli.run("job", "post", str(named), keypair=me).stdout.split())
    assert " in gpu (named by the definition)," in said
    said = " ".join(cli.run("job", "post", str(named), "--market", "cpu", keypair=me)
                    .stdout.split())
    assert " in cpu (named by the request)," in said


def test_post_without_market_goes_to_the_coordinators_default(tmp_path: Path) -> None:
    with running_coordinator(tmp_path, "--default-market", "cpu") as (_url, cli, admin):
        me = tmp_path / "me.json"
        cli.run("wallet", "new", "--keypair", str(me))
        cli.json("faucet", "5", keypair=me)
        for name in ("gpu", "cpu"):
            cli.run("market", "create", name, "--price-per-second", "0.001", keypair=admin)
        spec = tmp_path / "job.json"
        spec.write_text(json.dumps(SPEC))
        said = " ".join(cli.run("job", "post", str(spec), keypair=me).stdout.split())
        assert " in cpu (the coordinator's default)," in said
        job = cli.json("job", "post", str(spec), keypair=me)
        assert (job["market"], job["market_chosen_by"]) == ("cpu", "default")
        assert job["market_why"] == "the coordinator's default"
