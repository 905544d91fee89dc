"""The node agent against an in-process coordinator, running real Podman containers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from api_fixtures import Market
from executor_fixtures import HAVE_PODMAN, busybox_image, podman_names, python_image
from solders.keypair import Keypair

from nosgrid.node.agent import RESTART_REASON, SHUTDOWN_REASON, Agent
from nosgrid.node.executor import BUSYBOX_IMAGE, PodmanRuntime
from nosgrid.node.executor.config import podman_env
from nosgrid.node.runner.plan import FLOW_LABEL, JOB_LABEL, flow_id
from nosgrid.node.state import AgentState, InFlightJob, StateFile
from nosgrid.sdk.client import AsyncClient

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(not HAVE_PODMAN, reason="podman is not installed"),
]

__all__ = ["busybox_image", "python_image"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "jobs" / "three-op-pipeline.json"


def busybox_job(cmd: str) -> dict[str, Any]:
    return {"version": "0.1", "type": "container",
            "ops": [{"type": "container/run", "id": "main",
                     "args": {"image": BUSYBOX_IMAGE, "cmd": cmd}}]}


class NodeUnderTest:
    def __init__(self, m: Market, tmp: Path, **kwargs: Any) -> None:
        self.client = AsyncClient("http://coordinator", Keypair(), transport=m.transport,
                                  clock=m.clock)
        self.state_dir = tmp / "node"
        self.runtime = PodmanRuntime(self.state_dir / "executor")
        opts: dict[str, Any] = {"heartbeat_s": 0.5, "poll_wait_s": 1.0, "cancel_check_s": 0.3,
                                "benchmark": False, "grace_s": 0.5}
        opts.update(kwargs)
        self.agent = Agent(self.client, self.runtime, self.state_dir, ["cpu"], **opts)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.agent.run())

    async def close(self) -> None:
        self.agent.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)
        await self.client.aclose()


@pytest.fixture
async def node(market: Market, tmp_path: Path, busybox_image: str) -> AsyncIterator[NodeUnderTest]:
    n = NodeUnderTest(market, tmp_path)
    n.start()
    yield n
    await n.close()


async def post(m: Market, spec: dict[str, Any], timeout: int = 60) -> str:
    await m.alice.faucet("100")
    job = await m.alice.post_job(spec=spec, market="cpu", timeout=timeout)
    return str(job.id)


async def test_busybox_job_logs_outputs_settled_node_paid(market: Market,
                                                          node: NodeUnderTest) -> None:
    job_id = await post(market, busybox_job(
        "echo hello from the job; echo result-data > /outputs/out.txt; echo bye >&2"))
    done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=60)
    assert done.state == "settled", done
    assert done.fault is None and done.result["exit_code"] == 0
    [out] = done.result["outputs"]
    assert out["path"] == "/outputs/out.txt" and out["size"] == len(b"result-data\n")
    assert await market.alice.download_blob(out["sha256"]) == b"result-data\n"
    logs = "".join(c.data for c in (await market.alice.logs(job_id)).chunks)
    assert "hello from the job" in logs and "bye" in logs
    assert (await node.client.balance()).balance > 0
    assert StateFile(node.state_dir).load().in_flight is None


async def test_failing_job_is_failed_with_client_fault(market: Market,
                                                       node: NodeUnderTest) -> None:
    job_id = await post(market, busybox_job("echo about to fail; exit 3"))
    done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=60)
    assert done.state == "settled" and done.fault == "client"
    assert "exited with code 3" in done.reason


async def test_timed_out_job_is_killed_and_reported(market: Market, node: NodeUnderTest) -> None:
    job_id = await post(market, busybox_job("echo started; sleep 60"), timeout=2)
    done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=60)
    assert done.state == "settled" and done.fault == "client", done
    assert not [n for n in podman_names(node.state_dir / "executor") if job_id in n]


async def test_three_op_pipeline(market: Market, node: NodeUnderTest, python_image: str) -> None:
    job_id = await post(market, json.loads(EXAMPLE.read_text()), timeout=120)
    done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=120)
    assert done.state == "settled" and done.fault is None, done
    result = done.result
    assert result["results"]["prepare"]["token"][1] == "T-18"
    [out] = result["outputs"]
    body = await market.alice.download_blob(out["sha256"])
    assert body == b"hello-from-global T-18\n"
    logs = "".join(c.data for c in (await market.alice.logs(job_id)).chunks)
    assert "[prepare] first try fails" in logs and "restarting (1)" in logs
    assert "startup success" in logs and "stop_if_dependent_stops" in logs


async def test_cancelled_job_is_stopped(market: Market, node: NodeUnderTest) -> None:
    job_id = await post(market, busybox_job("echo running; sleep 60"))
    for _ in range(100):  # running, and its container exists (the start is reported first)
        if (await market.alice.job(job_id)).state == "running" and [
                n for n in podman_names(node.state_dir / "executor") if job_id in n]:
            break
        await asyncio.sleep(0.1)
    await market.alice.cancel(job_id)
    for _ in range(100):
        if not [n for n in podman_names(node.state_dir / "executor") if job_id in n]:
            break
        await asyncio.sleep(0.1)
    assert not [n for n in podman_names(node.state_dir / "executor") if job_id in n]
    for _ in range(50):
        if StateFile(node.state_dir).load().in_flight is None:
            break
        await asyncio.sleep(0.1)
    assert StateFile(node.state_dir).load().in_flight is None
    assert (await market.alice.job(job_id)).state == "settled"


async def test_restart_reports_in_flight_job_and_removes_leftovers(
    market: Market, tmp_path: Path, busybox_image: str
) -> None:
    m = market
    job_id = await post(m, busybox_job("sleep 60"))
    first = NodeUnderTest(m, tmp_path)
    await first.agent.register()
    taken = await first.client.poll(wait=1)
    assert taken.job.id == job_id
    await first.client.start_job(job_id)
    # containers left behind by the "crashed" agent: one it had recorded, one it had not yet
    # recorded (found by its flow label); and a later run of the same job by another node on
    # this host (attempt 2), which the recovery must leave alone
    flow = flow_id(job_id, 1)
    leftover, unrecorded, other = f"{flow}-0", f"{flow}-1", f"{flow_id(job_id, 2)}-0"
    for name, run_flow in ((leftover, flow), (unrecorded, flow), (other, flow_id(job_id, 2))):
        subprocess.run(
            ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "run", "-d", "--rm",
             "--name", name, "--network", "none", "--label", f"{JOB_LABEL}={job_id}",
             "--label", f"{FLOW_LABEL}={run_flow}", "--label", "nosgrid.executor=1",
             busybox_image, "sleep", "60"],
            check=True, capture_output=True, env=podman_env(first.state_dir / "executor"))
    StateFile(first.state_dir).save(AgentState(in_flight=InFlightJob(job_id, 0.0, (leftover,))))
    await first.client.aclose()

    again = NodeUnderTest(m, tmp_path)
    again.client = AsyncClient("http://coordinator", first.client.keypair,
                               transport=m.transport, clock=m.clock)
    again.agent.client = again.client
    again.start()
    done = await m.alice.wait(job_id, poll_s=0.2, timeout_s=30)
    await again.close()
    assert done.state == "settled" and done.fault == "node"
    assert done.reason == RESTART_REASON
    names = podman_names(again.state_dir / "executor")
    assert leftover not in names and unrecorded not in names
    assert other in names
    subprocess.run(["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "rm", "-f",
                    "-t", "0", other],
                   capture_output=True, env=podman_env(again.state_dir / "executor"))
    assert StateFile(again.state_dir).load().in_flight is None


async def test_requeued_job_runs_beside_the_dead_runs_container(
    market: Market, tmp_path: Path, busybox_image: str
) -> None:
    """Two nodes on one host (a local marketplace): the first dies mid-job and its container
    lives on; the job is requeued to the second, whose run must not collide with it."""
    m = market
    job_id = await post(m, busybox_job("echo second run > /outputs/o.txt"))
    dead = NodeUnderTest(m, tmp_path)
    await dead.agent.register()
    assert (await dead.client.poll(wait=1)).job.id == job_id
    await dead.client.start_job(job_id)
    orphan = f"{flow_id(job_id, 1)}-0"
    executor_dir = dead.state_dir / "executor"
    subprocess.run(
        ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "run", "-d", "--rm",
         "--name", orphan, "--network", "none", "--label", f"{JOB_LABEL}={job_id}",
         "--label", f"{FLOW_LABEL}={flow_id(job_id, 1)}", "--label", "nosgrid.executor=1",
         busybox_image, "sleep", "60"],
        check=True, capture_output=True, env=podman_env(executor_dir))
    await dead.client.aclose()
    m.clock.t += m.coord.settings.heartbeat_timeout_s + 1
    assert m.coord.maintenance()["requeued_or_refunded"] == 1

    second = NodeUnderTest(m, tmp_path)  # same state dir: the same Podman storage
    second.start()
    try:
        done = await m.alice.wait(job_id, poll_s=0.2, timeout_s=60)
    finally:
        await second.close()
    assert done.state == "settled" and done.fault is None, done
    assert done.attempts == 2 and done.node == str(second.client.keypair.pubkey())
    assert orphan in podman_names(executor_dir)  # the other run's container: not ours to touch
    subprocess.run(["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs", "rm", "-f",
                    "-t", "0", orphan], capture_output=True, env=podman_env(executor_dir))


async def test_stop_hands_the_job_back(market: Market, tmp_path: Path,
                                       busybox_image: str) -> None:
    n = NodeUnderTest(market, tmp_path, grace_s=0.5)
    n.start()
    job_id = await post(market, busybox_job("echo long; sleep 60"))
    for _ in range(100):
        if (await market.alice.job(job_id)).state == "running":
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    await n.close()  # sets stop: grace 0.5 s, then the job is handed back
    done = await market.alice.job(job_id)
    assert done.state == "settled" and done.fault == "node", done
    assert done.reason == SHUTDOWN_REASON
    assert not [x for x in podman_names(n.state_dir / "executor") if job_id in x]


async def test_lying_node_uploads_garbage(market: Market, tmp_path: Path,
                                          busybox_image: str) -> None:
    n = NodeUnderTest(market, tmp_path, lying=True)
    n.start()
    try:
        job_id = await post(market, busybox_job("echo truth > /outputs/a.txt"))
        done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=60)
    finally:
        await n.close()
    [out] = done.result["outputs"]
    assert out["sha256"] != hashlib.sha256(b"truth\n").hexdigest()
