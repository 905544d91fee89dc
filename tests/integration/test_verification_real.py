"""Verification through the coordinator: held payments, audits, disputes, slashing.

The first tests drive nodes by hand through the SDK (in-process ASGI, fake clock, fast).
The last one is the real path: a coordinator with the real clock and its maintenance
loop, honest node agents and one lying agent, all running real Podman containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio
from api_fixtures import Clock
from executor_fixtures import HAVE_PODMAN, busybox_image
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.errors import Forbidden, InsufficientFunds, InvalidJobSpec
from nosgrid.node.agent import Agent
from nosgrid.node.executor import BUSYBOX_IMAGE, PodmanRuntime
from nosgrid.sdk.client import AsyncClient
from nosgrid.sdk.models import JobView, VerificationView

T = TypeVar("T")

__all__ = ["busybox_image"]

HW = {"cpu_cores": 2, "memory_mb": 4096}
NOS = 10**6


def spec(mode: str, cmd: str = "echo 42 > /outputs/out.txt") -> dict[str, Any]:
    return {"version": "0.1", "type": "container", "meta": {"nosgrid": {"verification": mode}},
            "ops": [{"type": "container/run", "id": "main",
                     "args": {"image": BUSYBOX_IMAGE, "cmd": cmd}}]}


@dataclass
class Grid:
    coord: Coordinator
    transport: httpx.ASGITransport
    clock: Callable[[], float]
    admin: AsyncClient
    alice: AsyncClient
    clients: list[AsyncClient] = field(default_factory=list)

    def client(self, kp: Keypair | None = None) -> AsyncClient:
        c = AsyncClient("http://coordinator", kp or Keypair(), transport=self.transport,
                        clock=self.clock)
        self.clients.append(c)
        return c

    async def verification(self, job_id: str) -> VerificationView:
        return await self.alice.verification(job_id)

    async def ledger_ok(self) -> None:
        report = await self.alice.ledger_verify()
        assert report.ok, report.problems


async def make_grid(tmp: Path, clock: Callable[[], float], **settings: Any) -> Grid:
    admin_kp = Keypair()
    opts: dict[str, Any] = {"audit_window_s": 600, "auditor_min_clean_jobs": 0,
                            "auditor_min_reputation": 0.0}
    opts.update(settings)
    s = CoordinatorSettings(db=str(tmp / "c.db"), data_dir=tmp, faucet=True,
                            admin_keys=frozenset({str(admin_kp.pubkey())}), **opts)
    app = create_app(s, clock=clock, background=False)
    transport = httpx.ASGITransport(app=app)
    g = Grid(app.state.coordinator, transport, clock, None, None)  # type: ignore[arg-type]
    g.admin, g.alice = g.client(admin_kp), g.client()
    await g.admin.create_market({"name": "cpu", "price_per_second": 1000, "max_timeout": 600,
                                 "fee_bps": 500, "audit_fee_bps": 1200})
    await g.alice.faucet("100")
    return g


@pytest_asyncio.fixture
async def grid(tmp_path: Path) -> AsyncIterator[Grid]:
    g = await make_grid(tmp_path, Clock(), audit_rate_bps=10_000)
    yield g
    for c in g.clients:
        await c.aclose()


async def node(g: Grid, stake: str | None = None) -> AsyncClient:
    n = g.client()
    await n.register_node(HW, ["cpu"])
    if stake is not None:
        await n.faucet(stake)
        await n.request("POST", "/v1/stake", json_body={"action": "stake", "amount": stake,
                                                        "days": 30})
    return n


async def run(n: AsyncClient, payload: bytes) -> JobView:
    """Take the node's next job and report ``payload`` as its only output."""
    got = await n.poll(wait=0)
    assert got.job is not None
    job_id = got.job.id
    sha = await n.upload_blob(payload)
    await n.start_job(job_id)
    return await n.finish_job(job_id, seconds_used=5, outputs=[
        {"path": "/outputs/out.txt", "sha256": sha, "size": len(payload)}])


async def who_got_work(nodes: list[AsyncClient]) -> AsyncClient:
    for n in nodes:
        got = await n.poll(wait=0)
        if got.job is not None:
            return n
    raise AssertionError("no node was given the audit run")


async def post(g: Grid, mode: str) -> str:
    return str((await g.alice.post_job(spec=spec(mode), market="cpu", timeout=60)).id)


def me(n: AsyncClient) -> str:
    return str(n.keypair.pubkey())


async def test_none_settles_at_once(grid: Grid) -> None:
    n1 = await node(grid)
    job_id = await post(grid, "none")
    done = await run(n1, b"42\n")
    assert done.state == "settled"
    assert (await grid.verification(job_id)).status == "not_verified"


async def test_honest_job_is_held_audited_and_paid_after_the_audit(grid: Grid) -> None:
    n1 = await node(grid)
    job_id = await post(grid, "deterministic")
    done = await run(n1, b"42\n")
    assert done.state == "verifying"
    assert (await n1.balance()).balance == 0  # held
    others = [await node(grid), await node(grid)]
    grid.coord.maintenance()  # the beacon entry, the decision, the audit run
    v = await grid.verification(job_id)
    assert v.audited and v.status == "auditing" and v.rate_bps == 10_000
    auditor = await who_got_work(others)
    run_view = await run(auditor, b"42\n")
    assert run_view.state == "settled" and run_view.client == me(grid.alice)
    grid.coord.maintenance()
    v = await grid.verification(job_id)
    assert v.status == "passed" and v.auditor == me(auditor)
    job = await grid.alice.job(job_id)
    assert job.state == "settled"
    # the fake clock bills 1 s: 1000 gross, 5% fee, 12% audit fee → node 1000 − 50 − 120
    assert (await n1.balance()).balance == 830
    assert (await auditor.balance()).balance == 120  # the whole pool, as far as it goes
    summary = await grid.alice.request("GET", "/v1/verification/summary")
    assert summary["audit_runs"] == 1 and summary["audit_overhead"] == 0.5
    await grid.ledger_ok()


async def test_liar_is_disputed_slashed_and_the_client_refunded(grid: Grid) -> None:
    liar = await node(grid, stake="100")
    before = (await grid.alice.balance()).balance
    job_id = await post(grid, "deterministic")
    await run(liar, b"garbage")
    honest = [await node(grid), await node(grid)]
    rep_before = (await grid.alice.node(me(liar))).reputation
    grid.coord.maintenance()
    auditor = await who_got_work(honest)
    await run(auditor, b"42\n")
    grid.coord.maintenance()  # mismatch: disputed, a tiebreak run on the other node
    assert (await grid.alice.job(job_id)).state == "disputed"
    [tiebreaker] = [n for n in honest if n is not auditor]
    await run(tiebreaker, b"42\n")
    grid.coord.maintenance()
    v = await grid.verification(job_id)
    assert v.verdict == "node_wrong" and v.slashed == [me(liar)]
    assert v.panel == [me(tiebreaker)] and v.auditor == me(auditor)
    assert (await grid.alice.balance()).balance == before  # full refund
    standing = await grid.alice.node(me(liar))
    assert standing.stake == 50 * NOS and standing.jailed_until is not None
    assert standing.reputation < rep_before
    assert (await liar.balance()).balance == 0
    assert (await auditor.balance()).balance == 25 * NOS  # challenger's half of the slash
    with grid.coord.store.uow(write=False) as uow:
        [slash] = [e for e in uow.ledger.entries(0) if e.kind == "slash"]
    assert v.verdict_entry in str(slash.meta["evidence"])  # the verdict entry is evidence
    await grid.ledger_ok()


async def test_lying_auditor_is_slashed_and_the_node_paid(grid: Grid) -> None:
    n1 = await node(grid)
    job_id = await post(grid, "deterministic")
    await run(n1, b"42\n")
    others = [await node(grid, stake="100"), await node(grid, stake="100")]
    grid.coord.maintenance()
    auditor = await who_got_work(others)
    await run(auditor, b"lies")
    grid.coord.maintenance()
    [tiebreaker] = [n for n in others if n is not auditor]
    await run(tiebreaker, b"42\n")
    grid.coord.maintenance()
    v = await grid.verification(job_id)
    assert v.verdict == "auditor_wrong" and v.slashed == [me(auditor)]
    assert (await n1.balance()).balance > 0
    assert (await grid.alice.node(me(auditor))).stake == 50 * NOS
    await grid.ledger_ok()


async def test_tolerance_compares_numbers(grid: Grid) -> None:
    n1 = await node(grid)
    job_id = await post(grid, "tolerance")
    await run(n1, b'{"loss": 0.5}')
    others = [await node(grid), await node(grid)]
    grid.coord.maintenance()
    await run(await who_got_work(others), b'{"loss": 0.50000000001}')
    grid.coord.maintenance()
    v = await grid.verification(job_id)
    assert v.status == "passed" and v.comparison.max_abs_error > 0


async def test_client_cannot_cancel_an_audit_run(grid: Grid) -> None:
    n1 = await node(grid)
    job_id = await post(grid, "deterministic")
    await run(n1, b"42\n")
    await node(grid)
    grid.coord.maintenance()
    [audit] = (await grid.verification(job_id)).runs
    with pytest.raises(Forbidden):
        await grid.alice.cancel(audit.job)
    await grid.ledger_ok()


async def test_unsampled_job_is_released_when_the_window_closes(tmp_path: Path) -> None:
    clock = Clock()
    g = await make_grid(tmp_path, clock, audit_rate_bps=0, audit_window_s=30)
    try:
        n1 = await node(g)
        job_id = await post(g, "deterministic")
        await run(n1, b"42\n")
        g.coord.maintenance()
        assert (await g.verification(job_id)).status == "waiting"
        assert (await g.alice.job(job_id)).state == "verifying"
        clock.t += 31
        g.coord.maintenance()
        assert (await g.verification(job_id)).status == "released"
        assert (await g.alice.job(job_id)).state == "settled"
        assert (await n1.balance()).balance == 830
        await g.ledger_ok()
    finally:
        for c in g.clients:
            await c.aclose()


# --------------------------------------------------------------------- client-paid replicas


def replicated(k: int, mode: str = "deterministic") -> dict[str, Any]:
    body = spec(mode)
    body["meta"]["nosgrid"]["replicas"] = k
    return body


@pytest_asyncio.fixture
async def unsampled(tmp_path: Path) -> AsyncIterator[Grid]:
    """Sampling off: only the replicas a client asks for are run. The auditor bar is the
    default (200 clean jobs): replica runners need not be established, so fresh nodes
    serve."""
    g = await make_grid(tmp_path, Clock(), audit_rate_bps=0, auditor_min_clean_jobs=200,
                        auditor_min_reputation=0.5)
    yield g
    for c in g.clients:
        await c.aclose()


async def test_replicas_run_on_distinct_nodes_and_the_client_pays_each(unsampled: Grid
                                                                       ) -> None:
    g = unsampled
    n1 = await node(g)
    before = (await g.alice.balance()).balance
    job = await g.alice.post_job(spec=replicated(3), market="cpu", timeout=60)
    # the deposit for three runs is reserved at once: 3 × 1000/s × 60 s
    assert before - (await g.alice.balance()).balance == 3 * 60_000
    await run(n1, b"42\n")
    others = [await node(g), await node(g), await node(g)]
    g.coord.maintenance()
    v = await g.verification(job.id)
    assert v.replicas == 3 and v.rate_bps == 10_000 and v.status == "auditing"
    runners = {r.node for r in v.runs}
    assert len(v.runs) == 2 and len(runners) == 2 and me(n1) not in runners
    for n in others:
        if me(n) in runners:
            held = await run(n, b"42\n")
            assert held.state == "verifying"  # a replica is held like any verified job
    g.coord.maintenance()
    v = await g.verification(job.id)
    assert v.status == "passed" and sorted(v.auditors) == sorted(runners)
    # each run billed 1 s (the fake clock): 1000 gross, 5% fee, no audit fee
    assert (await n1.balance()).balance == 950
    for n in others:
        assert (await n.balance()).balance == (950 if me(n) in runners else 0)
    assert before - (await g.alice.balance()).balance == 3 * 1000
    # the client's list shows its job; the runs are in the verification view
    assert [j.id for j in (await g.alice.jobs()).jobs] == [job.id]
    summary = await g.alice.request("GET", "/v1/verification/summary")
    assert summary["audit_pool"] == 0  # the pool paid for nothing
    await g.ledger_ok()


async def test_a_replica_that_disagrees_is_disputed_and_unpaid(unsampled: Grid) -> None:
    g = unsampled
    n1 = await node(g)
    before = (await g.alice.balance()).balance
    job = await g.alice.post_job(spec=replicated(2), market="cpu", timeout=60)
    await run(n1, b"42\n")
    others = [await node(g, stake="100"), await node(g, stake="100")]
    g.coord.maintenance()
    liar = await who_got_work(others)
    await run(liar, b"lies")
    g.coord.maintenance()  # mismatch: disputed, a tiebreak run on the other node
    assert (await g.alice.job(job.id)).state == "disputed"
    [tiebreaker] = [n for n in others if n is not liar]
    await run(tiebreaker, b"42\n")
    g.coord.maintenance()
    v = await g.verification(job.id)
    assert v.verdict == "auditor_wrong" and v.slashed == [me(liar)]
    # the node is paid its run, and as challenger half of the liar's slash
    assert (await n1.balance()).balance == 950 + 25 * NOS
    assert (await liar.balance()).balance == 0  # its replica was refunded to the client
    # the client paid the node's run only (the tiebreak is the protocol's cost)
    assert before - (await g.alice.balance()).balance == 1000
    await g.ledger_ok()


async def test_a_lying_node_is_outvoted_by_the_replicas(unsampled: Grid) -> None:
    g = unsampled
    liar = await node(g, stake="100")
    before = (await g.alice.balance()).balance
    job = await g.alice.post_job(spec=replicated(3), market="cpu", timeout=60)
    await run(liar, b"lies")
    honest = [await node(g), await node(g), await node(g)]
    g.coord.maintenance()
    v = await g.verification(job.id)
    replicas = [n for n in honest if me(n) in {r.node for r in v.runs}]
    for n in replicas:
        await run(n, b"42\n")
    g.coord.maintenance()  # both replicas differ from the node: disputed, one tiebreak
    [tiebreaker] = [n for n in honest if n not in replicas]
    await run(tiebreaker, b"42\n")
    g.coord.maintenance()
    v = await g.verification(job.id)
    assert v.verdict == "node_wrong" and v.slashed == [me(liar)]
    assert all(r.paid for r in v.runs if r.role == "audit")
    assert (await liar.balance()).balance == 0
    # the client paid the two honest replicas, not the lie
    assert before - (await g.alice.balance()).balance == 2 * 1000
    await g.ledger_ok()


async def test_unused_replica_deposits_come_back(unsampled: Grid) -> None:
    g = unsampled
    before = (await g.alice.balance()).balance
    job = await g.alice.post_job(spec=replicated(3), market="cpu", timeout=60)
    await g.alice.cancel(job.id)
    assert (await g.alice.balance()).balance == before
    # a job that fails is not compared: every reserved deposit but its own run's comes back
    n1 = await node(g)
    job = await g.alice.post_job(spec=replicated(2), market="cpu", timeout=60)
    got = await n1.poll(wait=0)
    await n1.start_job(got.job.id)
    await n1.fail_job(job.id, reason="exit code 3", fault="client", seconds_used=1)
    assert before - (await g.alice.balance()).balance == 1000
    # nobody else to run the replica: once the window closes the node is paid, unaudited
    job = await g.alice.post_job(spec=replicated(2), market="cpu", timeout=60)
    await run(n1, b"42\n")
    g.coord.maintenance()
    assert (await g.verification(job.id)).status == "auditing"
    g.clock.t += 601  # type: ignore[attr-defined]
    g.coord.maintenance()
    v = await g.verification(job.id)
    assert v.status == "released" and v.reason == "no auditor could run the job"
    assert before - (await g.alice.balance()).balance == 2000
    await g.ledger_ok()


async def test_replicas_need_the_funds_for_every_run(unsampled: Grid) -> None:
    poor = g_client = unsampled.client()
    await g_client.faucet("0.1")
    with pytest.raises(InsufficientFunds, match="× 3 replicas"):
        await poor.post_job(spec=replicated(3), market="cpu", timeout=60)
    assert (await poor.balance()).balance == 100_000
    with pytest.raises(InvalidJobSpec, match="replicas > 1 needs verification"):
        await poor.post_job(spec=replicated(2, "none"), market="cpu", timeout=60)
    await unsampled.ledger_ok()


# --------------------------------------------------------------------- the real path


class RealNode:
    def __init__(self, g: Grid, tmp: Path, name: str, *, lying: bool = False) -> None:
        self.keypair = Keypair()
        self.client = g.client(self.keypair)
        state = tmp / name
        self.agent = Agent(self.client, PodmanRuntime(state / "executor"), state, ["cpu"],
                           heartbeat_s=0.5, poll_wait_s=1.0, cancel_check_s=0.3,
                           benchmark=False, grace_s=0.5, lying=lying)
        self.task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return str(self.keypair.pubkey())

    def start(self) -> None:
        self.task = asyncio.create_task(self.agent.run())

    async def close(self) -> None:
        self.agent.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)


async def until(check: Callable[[], Awaitable[T | None]], timeout_s: float = 60.0) -> T:
    end = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < end, "timed out waiting"
        await asyncio.sleep(0.2)


@pytest.mark.container
@pytest.mark.skipif(not HAVE_PODMAN, reason="podman is not installed")
async def test_real_agents_liar_audited_slashed_honest_paid(tmp_path: Path,
                                                            busybox_image: str) -> None:
    g = await make_grid(tmp_path, time.time, audit_rate_bps=10_000,
                        maintenance_interval_s=0.2, heartbeat_timeout_s=30.0)
    loop = asyncio.create_task(g.coord.run_maintenance())
    nodes: list[RealNode] = []
    try:
        # the liar is staked and alone when the job is posted, so it takes it
        liar = RealNode(g, tmp_path, "liar", lying=True)
        await liar.client.faucet("100")
        await liar.client.request("POST", "/v1/stake", json_body={
            "action": "stake", "amount": "100", "days": 30})
        nodes.append(liar)
        liar.start()
        await until(lambda: _registered(g, liar.id))
        before = (await g.alice.balance()).balance
        faked = await post(g, "deterministic")
        await until(lambda: _state_in(g, faked, {"verifying", "disputed", "settled"}))
        assert (await g.alice.job(faked)).node == liar.id
        await g.ledger_ok()
        honest = [RealNode(g, tmp_path, f"honest{i}") for i in range(2)]
        nodes += honest
        for n in honest:
            n.start()
        v = await until(lambda: _verdict(g, faked), timeout_s=120)
        assert v.verdict == "node_wrong" and v.slashed == [liar.id]
        assert v.auditor in {n.id for n in honest} and len(v.panel) == 1
        assert (await g.alice.job(faked)).state == "settled"
        assert (await g.alice.balance()).balance == before  # refunded
        standing = await g.alice.node(liar.id)
        assert standing.stake == 50 * NOS and standing.jailed_until is not None
        honest_rep = (await g.alice.node(v.auditor)).reputation
        assert standing.reputation < honest_rep
        await g.ledger_ok()

        # an honest job under audit passes and its node is paid after the audit
        good = await post(g, "deterministic")
        v = await until(lambda: _verdict(g, good), timeout_s=120)
        done = await g.alice.job(good)
        assert v.status == "passed" and done.state == "settled"
        assert done.node in {n.id for n in honest} and v.auditor != done.node
        assert (await g.alice.node(done.node)).balance > 0

        # verification none settles at once
        plain = await post(g, "none")
        done = await until(lambda: _state_in(g, plain, {"settled"}))
        assert (await g.verification(plain)).status == "not_verified"
        summary = await g.alice.request("GET", "/v1/verification/summary")
        assert summary["audit_runs"] >= 3
        print("verification summary:", summary)
        await g.ledger_ok()
    finally:
        for n in nodes:
            await n.close()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        for c in g.clients:
            await c.aclose()


async def _registered(g: Grid, node_id: str) -> bool:
    with g.coord.store.uow(write=False) as uow:
        return any(n["id"] == node_id for n in uow.nodes.all())


async def _state_in(g: Grid, job_id: str, states: set[str]) -> JobView | None:
    job = await g.alice.job(job_id)
    return job if job.state in states else None


async def _verdict(g: Grid, job_id: str) -> VerificationView | None:
    v = await g.verification(job_id)
    return v if v.verdict else None
