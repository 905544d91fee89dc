"""The node agent against an in-process coordinator, running real Podman containers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
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
STORY = EXAMPLE.with_name("story-pipeline.json")


def busybox_job(cmd: str) -> dict[str, Any]:
    return {"version": "0.1", "type": "container",
            "ops": [{"type": "container/run", "id": "main",
                     "args": {"image": BUSYBOX_IMAGE, "cmd": cmd}}]}


class NodeUnderTest:
    def __init__(self, m: Market, tmp: Path, *, markets: Sequence[str] = ("cpu",),
                 transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        self.client = AsyncClient("http://coordinator", Keypair(),
                                  transport=transport or m.transport, clock=m.clock)
        self.state_dir = tmp / "node"
        self.runtime = PodmanRuntime(self.state_dir / "executor")
        opts: dict[str, Any] = {"heartbeat_s": 0.5, "poll_wait_s": 1.0, "cancel_check_s": 0.3,
                                "benchmark": False, "grace_s": 0.5}
        opts.update(kwargs)
        self.agent = Agent(self.client, self.runtime, self.state_dir, markets, **opts)
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


async def test_story_pipeline_depends_on_ops_of_earlier_groups(market: Market,
                                                               node: NodeUnderTest) -> None:
    """Three groups, dependencies across them, literals read from earlier groups' results."""
    job_id = await post(market, json.loads(STORY.read_text()), timeout=120)
    done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=120)
    assert done.state == "settled" and done.fault is None, done
    results = done.result["results"]
    assert results["image"]["cover_path"] == ["the-fox.png"]
    assert results["download"]["dest"] == ["story=The Fox cover=the-fox.png video=the-fox.mp4"]
    [out] = done.result["outputs"]
    assert await market.alice.download_blob(out["sha256"]) == \
        b"uploaded story=The Fox cover=the-fox.png video=the-fox.mp4\n"
    logs = "".join(c.data for c in (await market.alice.logs(job_id)).chunks)
    assert "drawing a cover for The Fox" in logs and "rendering A quick tale" in logs


async def test_a_dependency_of_an_earlier_group_has_ended_but_stops_nothing(
        market: Market, node: NodeUnderTest) -> None:
    """stop_if_dependent_stops watches the op's own group only: an earlier group has ended."""
    spec = {"version": "0.1", "type": "container", "ops": [
        {"type": "container/run", "id": "first",
         "args": {"image": BUSYBOX_IMAGE, "cmd": "echo token=T-7"},
         "results": {"token": "(?<=token=).*"}},
        {"type": "container/run", "id": "second",
         "args": {"image": BUSYBOX_IMAGE,
                  "cmd": "sleep 1; echo second got %%ops.first.results.token%%"},
         "execution": {"depends_on": ["first"], "stop_if_dependent_stops": True}}]}
    job_id = await post(market, spec)
    done = await market.alice.wait(job_id, poll_s=0.2, timeout_s=60)
    assert done.state == "settled" and done.fault is None, done
    logs = "".join(c.data for c in (await market.alice.logs(job_id)).chunks)
    assert "second got T-7" in logs and "stop_if_dependent_stops" not in logs


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


# ------------------------------------------- what the coordinator answers must not stop a node

Answer = Callable[[httpx.Request], Awaitable[httpx.Response | None]]


class Intercepted(httpx.AsyncBaseTransport):
    """The coordinator, except that requests whose path contains ``path`` are first offered
    to ``answer``: a response it returns is what the node gets (the request never reaches
    the coordinator); None lets the request through."""

    def __init__(self, inner: httpx.AsyncBaseTransport, path: str, answer: Answer) -> None:
        self.inner, self.path, self.answer = inner, path, answer
        self.seen = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.path in request.url.path:
            self.seen += 1
            response = await self.answer(request)
            if response is not None:
                return response
        return await self.inner.handle_async_request(request)


def refuse(times: int, status: int, code: str | None) -> Answer:
    """Answer the first ``times`` requests with ``status``: an error body with ``code``, or
    (None) the plain page a proxy in front of the coordinator sends; then let them through."""
    left = times

    async def answer(request: httpx.Request) -> httpx.Response | None:
        nonlocal left
        if left <= 0:
            return None
        left -= 1
        if code is None:
            return httpx.Response(status, text="<html>502 Bad Gateway</html>")
        return httpx.Response(status, json={"error": {"code": code, "message": f"scripted {code}"}})
    return answer


async def _run_two_jobs(m: Market, n: NodeUnderTest) -> tuple[Any, Any, bool]:
    """Post two jobs one after the other to the started node ``n``; their final views, and
    whether the agent was still running after both."""
    try:  # the first job lives long enough for log pushes and heartbeats
        first = await post(m, busybox_job("echo one; echo one > /outputs/o.txt; sleep 1.5"))
        done = await m.alice.wait(first, poll_s=0.2, timeout_s=30)
        second = await post(m, busybox_job("echo two"))
        again = await m.alice.wait(second, poll_s=0.2, timeout_s=30)
        alive = n.task is not None and not n.task.done()
    finally:
        await n.close()
    return done, again, alive


@pytest.mark.parametrize(("path", "status", "code", "fault"), [
    pytest.param("/finish", 503, "unavailable", None, id="finish-503"),
    pytest.param("/finish", 500, "internal", None, id="finish-500"),
    pytest.param("/finish", 502, None, None, id="finish-502-from-a-proxy"),
    pytest.param("/finish", 429, "rate_limited", None, id="finish-429"),
    pytest.param("/finish", 400, "invalid_input", "client", id="finish-400-is-failed"),
    pytest.param("/v1/blobs/", 500, "internal", None, id="upload-500"),
    pytest.param("/start", 500, "internal", None, id="start-500"),
    pytest.param("/logs", 409, "conflict", None, id="logs-409"),
    pytest.param("/heartbeat", 500, "internal", None, id="heartbeat-500"),
    pytest.param("/poll", 500, "internal", None, id="poll-500"),
    pytest.param("/register", 500, "internal", None, id="register-500"),
    pytest.param("/register", 502, None, None, id="register-502-from-a-proxy"),
])
async def test_a_refused_request_is_retried_or_dropped_never_fatal(
    market: Market, tmp_path: Path, busybox_image: str, path: str, status: int,
    code: str | None, fault: str | None,
) -> None:
    """Each request the agent sends, refused twice: a transient refusal (5xx, 429) is asked
    again, a refused result is reported as a failure instead, and the node takes the next
    job either way."""
    intercepted = Intercepted(market.transport, path, refuse(2, status, code))
    n = NodeUnderTest(market, tmp_path, transport=intercepted)
    n.start()
    done, again, alive = await _run_two_jobs(market, n)
    assert intercepted.seen > 0 and alive
    assert (done.state, done.fault) == ("settled", fault), done
    assert (again.state, again.fault) == ("settled", fault), again


async def test_a_finish_report_answered_409_is_dropped_and_the_node_goes_on(
    market: Market, tmp_path: Path, busybox_image: str
) -> None:
    """The client cancels just as the node reports: the report gets 409 ("it is settled")."""
    cancelled: list[str] = []

    async def cancel_first(request: httpx.Request) -> None:
        if not cancelled:
            job_id = request.url.path.split("/")[-2]
            cancelled.append(str((await market.alice.cancel(job_id)).id))

    n = NodeUnderTest(market, tmp_path,
                      transport=Intercepted(market.transport, "/finish", cancel_first))
    n.start()
    done, again, alive = await _run_two_jobs(market, n)
    assert alive and cancelled == [done.id]
    assert (done.state, done.outcome) == ("settled", "cancelled"), done
    assert (again.state, again.fault, again.outcome) == ("settled", None, "completed"), again


@pytest.mark.parametrize(("cancel_check_s", "cmd"), [
    pytest.param(0.3, "echo running; sleep 60", id="the-node-sees-the-cancel"),
    pytest.param(60.0, "echo running; sleep 2", id="the-job-ends-before-the-node-sees-it"),
])
async def test_a_client_cancelling_a_running_job_does_not_stop_the_node(
    market: Market, tmp_path: Path, busybox_image: str, cancel_check_s: float, cmd: str
) -> None:
    n = NodeUnderTest(market, tmp_path, cancel_check_s=cancel_check_s)
    n.start()
    try:
        job_id = await post(market, busybox_job(cmd))
        for _ in range(100):
            if (await market.alice.job(job_id)).state == "running":
                break
            await asyncio.sleep(0.1)
        await market.alice.cancel(job_id)
        for _ in range(100):  # the node is done with it: container stopped, state cleared
            if StateFile(n.state_dir).load().in_flight is None and not [
                    x for x in podman_names(n.state_dir / "executor") if job_id in x]:
                break
            await asyncio.sleep(0.1)
        assert not [x for x in podman_names(n.state_dir / "executor") if job_id in x]
        following = await post(market, busybox_job("echo next"))
        done = await market.alice.wait(following, poll_s=0.2, timeout_s=30)
        alive = n.task is not None and not n.task.done()
    finally:
        await n.close()
    assert alive
    assert (done.state, done.fault) == ("settled", None), done
    assert (await market.alice.job(job_id)).outcome == "cancelled"


async def test_a_node_that_pinned_nothing_runs_a_job_of_a_market_created_later(
    market: Market, tmp_path: Path, busybox_image: str
) -> None:
    n = NodeUnderTest(market, tmp_path, markets=())
    n.start()
    try:
        for _ in range(100):  # registered (serving `cpu`) and waiting on its long-poll
            if market.coord.notifier.waiting("cpu"):
                break
            await asyncio.sleep(0.05)
        await market.admin.create_market({"name": "batch", "price_per_second": 10})
        await market.alice.faucet("100")
        job = await market.alice.post_job(spec=busybox_job("echo in batch"), market="batch",
                                          timeout=60)
        done = await market.alice.wait(job.id, poll_s=0.2, timeout_s=30)
        for _ in range(50):  # the next heartbeat tells the agent
            if n.agent.serving == ["batch", "cpu"]:
                break
            await asyncio.sleep(0.1)
    finally:
        await n.close()
    assert (done.state, done.fault, done.node) == ("settled", None,
                                                   str(n.client.keypair.pubkey())), done
    assert n.agent.serving == ["batch", "cpu"]
