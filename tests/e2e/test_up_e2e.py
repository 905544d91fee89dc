"""`nosgrid up` as a user runs it: a job through the CLI in Podman, then a node SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Cli, running_up, wait_until
from nosgrid.core.money import parse_nos
from nosgrid.sdk.wallet import load_keypair

pytestmark = [pytest.mark.e2e, pytest.mark.container]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobs"


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[str, Cli, Path]]:
    with running_up(tmp_path, 2, "--heartbeat-timeout", "4") as stack:
        yield stack.url, stack.cli, stack.data


def test_job_through_the_cli_then_a_node_killed_mid_job(
    up: tuple[str, Cli, Path], tmp_path: Path
) -> None:
    _url, cli, data = up
    me = tmp_path / "me.json"
    cli.run("wallet", "new", "--keypair", str(me))
    cli.run("faucet", "50", keypair=me)

    # 1. a job posted through the CLI runs in Podman on a node; result fetched
    done = cli.json("job", "post", str(EXAMPLES / "batch-hello.json"), "--market", "cpu",
                    "--wait", keypair=me)
    # batch-hello asks for deterministic verification: the result is in, the node's pay is
    # held for the audit window (a minute on a local marketplace), then released
    assert done["state"] in ("verifying", "settled") and done["fault"] is None, done
    out = tmp_path / "out"
    cli.run("job", "result", done["id"], "-o", str(out), keypair=me)
    assert (out / "outputs" / "status.txt").read_text() == "done\n"
    done = wait_until("the held pay to be released", lambda: (
        j if (j := cli.json("job", "status", done["id"], keypair=me))["state"] == "settled"
        else None), timeout=150)
    cost = parse_nos(done["settlement"]["cost_nos"])
    assert cli.json("wallet", "balance", keypair=me)["balance"] == parse_nos("50") - cost

    # 2. a node is SIGKILLed while running a job; `up` restarts it, and either the restarted
    # agent reports the job it had in flight (refund) or the coordinator requeues it to the
    # other node when the heartbeats stop: the job ends, and no token is lost
    spec = tmp_path / "slow.json"
    spec.write_text(json.dumps({"version": "0.1", "type": "container", "ops": [{
        "type": "container/run", "id": "slow", "args": {
            "image": "localhost/nosgrid-busybox:test", "cmd": "echo working; sleep 6"}}]}))
    job = cli.json("job", "post", str(spec), "--market", "cpu", "--timeout", "120",
                   keypair=me)
    running = wait_until("the job to run", lambda: (
        j if (j := cli.json("job", "status", job["id"], keypair=me))["state"] == "running"
        else None))
    victim = next(i for i in (0, 1)
                  if str(load_keypair(data / "nodes" / str(i) / "id.json").pubkey())
                  == running["node"])
    pid = int(subprocess.run(["pgrep", "-f", f"state-dir {data}/nodes/{victim} "],
                             capture_output=True, text=True, check=True).stdout.split()[0])
    os.kill(pid, signal.SIGKILL)
    final = wait_until("the job to end", lambda: (
        j if (j := cli.json("job", "status", job["id"], keypair=me))["state"] == "settled"
        else None), timeout=90)
    if final["fault"] == "node":  # reported by the restarted agent: a full refund
        assert final["reason"] == "node restarted mid-job", final
        assert final["settlement"]["refund"] == final["deposit"]
    else:  # requeued and run again by a node
        assert final["attempts"] == 2 and final["fault"] is None, (final["fault"],
                                                                   final["reason"])
    cost2 = parse_nos(final["settlement"]["cost_nos"])
    # no token lost: the client paid exactly the two settled costs, the ledger verifies
    assert cli.json("wallet", "balance", keypair=me)["balance"] == (
        parse_nos("50") - cost - cost2)
    report = cli.json("ledger", "verify")
    assert report["ok"] and report["supply"] == "100000000"
