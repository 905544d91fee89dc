"""`nosgrid deployment` on `nosgrid up --nodes 3` with real containers serving HTTP: an
infinite deployment keeps two healthy replicas when a container is killed, when a
replica's health endpoint starts failing (billed to its first failed check, exactly) and
when a node agent is SIGKILLed; its stable URL keeps answering."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Cli, running_up, wait_until
from nosgrid.node.executor.config import podman_env

pytestmark = [pytest.mark.e2e, pytest.mark.container]
WEB = Path(__file__).resolve().parents[2] / "examples" / "deployments" / "web.json"


@pytest.fixture
def up3(tmp_path: Path) -> Iterator[tuple[str, Cli, Path, subprocess.Popen[bytes]]]:
    with running_up(tmp_path, 3, "--heartbeat-timeout", "4") as stack:
        yield stack.url, stack.cli, stack.data, stack.proc


def _healthy(cli: Cli, me: Path, name: str, n: int) -> list[dict[str, Any]] | None:
    view = cli.json("deployment", "show", name, keypair=me)
    up = [r for r in view["running"] if r["healthy"] and not r["stopping"]]
    return up if len(up) >= n else None


def _podman(data: Path, *args: str) -> str:
    env = {**os.environ, **podman_env(data / "executor")}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                          check=True).stdout


def test_infinite_deployment_survives_a_killed_container_a_failing_endpoint_and_a_dead_node(
        up3: tuple[str, Cli, Path, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, cli, data, _proc = up3
    me = tmp_path / "me.json"
    cli.run("wallet", "new", "--keypair", str(me))
    cli.run("faucet", "100", keypair=me)
    created = cli.json("deployment", "create", str(WEB), "--strategy", "infinite",
                       "--name", "web", "--replicas", "2", "--timeout", "300", "--grace",
                       "2", keypair=me)
    stable = f"{url}{created['urls']['8080']}"
    first = wait_until("two healthy replicas", lambda: _healthy(cli, me, "web", 2), 120)
    assert httpx.get(stable, timeout=5).text.startswith("hello from")

    # 1. a replica's container is killed: its job ends, a new replica takes its place
    victim = first[0]["job_id"]
    for cid in _podman(data, "ps", "-q", "--filter", f"label=nosgrid.job={victim}").split():
        _podman(data, "kill", cid)
    after_kill = wait_until("a replacement for the killed container", lambda: (
        (up := _healthy(cli, me, "web", 2)) and victim not in {r["job_id"] for r in up}
        and up), 120)
    assert httpx.get(stable, timeout=5).status_code == 200

    # 2. a replica's health endpoint starts failing: stopped after the grace window,
    #    billed to its first failed check, replaced
    sick = after_kill[0]["job_id"]
    for cid in _podman(data, "ps", "-q", "--filter", f"label=nosgrid.job={sick}").split():
        _podman(data, "exec", cid, "rm", "/tmp/www/health")
    job = wait_until("the sick replica stopped and settled", lambda: (
        (j := cli.json("job", "status", sick, keypair=me))["state"] == "settled" and j), 90)
    said = next(e for e in cli.json("deployment", "events", "web", keypair=me)
                if e["kind"] == "replica_unhealthy" and e["job_id"] == sick)
    since = int(re.search(r"since (\d+)", said["detail"]).group(1))  # type: ignore[union-attr]
    assert job["seconds_used"] == since - job["started_at"]
    pay = job["settlement"]
    assert pay["node_pay"] + pay["treasury_fee"] + pay["stakers_fee"] \
        == job["price_per_second"] * job["seconds_used"]
    assert pay["refund"] == job["deposit"] - job["price_per_second"] * job["seconds_used"]
    wait_until("two healthy replicas again", lambda: (
        (up := _healthy(cli, me, "web", 2)) and sick not in {r["job_id"] for r in up}
        and up), 120)

    # 3. a node agent is SIGKILLed: its replica ends or is requeued (`up` restarts the
    #    agent under the same key, whose recovery hands the job back), and the deployment
    #    has two healthy replicas again without the job it had there
    show = cli.json("deployment", "show", "web", keypair=me)
    node, lost = next((r["node"], r["job_id"]) for r in show["running"] if r["healthy"])
    killed = 0
    for line in subprocess.run(["pgrep", "-af", "nosgrid.cli.main node start"],
                               capture_output=True, text=True).stdout.splitlines():
        pid, _, cmd = line.partition(" ")
        state = Path(cmd.split("--state-dir ")[1].split()[0])
        saved = state / "agent-state.json"
        if saved.exists() and node in saved.read_text():
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    assert killed == 1
    wait_until("two healthy replicas after the node's death", lambda: (
        (up := _healthy(cli, me, "web", 2))
        and all(r["job_id"] != lost or r["node"] != node for r in up) and up), 180)
    assert httpx.get(stable, timeout=5).status_code == 200
    events = [e["kind"] for e in cli.json("deployment", "events", "web", keypair=me)]
    assert "replica_unhealthy" in events and events.count("replica_posted") >= 4
    assert cli.json("ledger", "verify", keypair=me)["ok"]
