"""Deployments and job extension through the real app and SQLite, with nodes that report
health the way the agent does, a clock the test moves, and a real HTTP server behind the
stable URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from api_fixtures import BUSYBOX_SPEC, Market

from nosgrid.core.errors import (
    Conflict,
    DeploymentNotFound,
    Forbidden,
    IllegalTransition,
    InsufficientFunds,
    InvalidInput,
)
from nosgrid.core.ledger import TREASURY, escrow, wallet
from nosgrid.sdk.client import AsyncClient

HW = {"cpu_cores": 2, "memory_mb": 4096}
SERVICE = {"version": "0.1", "type": "container", "ops": [{
    "type": "container/run", "id": "web",
    "args": {"image": "localhost/nosgrid-busybox:test", "cmd": "httpd -f -p 8080",
             "expose": [{"port": 8080, "health_checks": [{
                 "type": "http", "path": "/", "method": "GET", "expected_status": 200,
                 "continuous": True}]}]}}]}


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.server.server_address[1]} {self.path}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def replica_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def _run(m: Market, node: AsyncClient, endpoint: str) -> str:
    """The node takes the next job, starts it and reports its port healthy."""
    job = (await node.poll(wait=0)).job
    assert job is not None
    await node.start_job(job.id)
    await node.report_service(job.id, "web", endpoint, True)
    return job.id


# ---------------------------------------------------------------------------- job extend


async def test_extend_grows_the_escrow_once_per_key_and_refuses_what_it_cannot(
        market: Market) -> None:
    m = market
    await m.alice.faucet("0.3")
    await m.node.register_node(HW, ["cpu"])
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    extended = await m.alice.extend(job.id, 50, idempotency_key="x1")
    assert extended.timeout == 150 and extended.deposit == 150_000
    again = await m.alice.extend(job.id, 50, idempotency_key="x1")  # a retry: once
    assert again.timeout == 150
    with m.coord.store.uow(write=False) as uow:
        assert uow.ledger.balance(escrow(job.id)) == 150_000
    with pytest.raises(Forbidden):
        await m.bob.extend(job.id, 10)
    with pytest.raises(InsufficientFunds, match=r"0\.6 NOS more"):
        await m.alice.extend(job.id, 600)  # 0.15 NOS left
    with pytest.raises(InvalidInput, match=r"1\.\.600"):
        await m.alice.extend(job.id, 601)
    await m.alice.cancel(job.id)
    with pytest.raises(IllegalTransition, match="already settled"):
        await m.alice.extend(job.id, 10)
    with m.coord.store.uow(write=False) as uow:
        assert uow.ledger.balance(wallet(m.alice.pubkey)) == 300_000


# ---------------------------------------------------------------------------- deployments


async def test_infinite_replaces_an_unhealthy_replica_and_bills_it_to_the_first_failed_check(
        market: Market, replica_server: str) -> None:
    m = market
    await m.alice.faucet("10")
    await m.node.register_node(HW, ["cpu"])
    await m.node2.register_node(HW, ["cpu"])
    d = await m.alice.create_deployment(strategy="infinite", spec=SERVICE, name="web",
                                        replicas=2, timeout=300, market="cpu", grace_s=10)
    assert d.strategy == "infinite" and len(d.running) == 2
    assert d.urls == {"8080": f"/d/{d.id}/8080/"}
    a = await _run(m, m.node, replica_server)
    b = await _run(m, m.node2, replica_server)
    m.clock.t += 40
    await m.node.report_service(a, "web", replica_server, False)  # its first failed check
    failed_at = int(m.clock.t)
    m.clock.t += 9
    m.coord.reconcile_deployments(int(m.clock.t))
    assert {r.job_id for r in (await m.alice.deployment("web")).running} == {a, b}  # grace
    m.clock.t += 1
    m.coord.reconcile_deployments(int(m.clock.t))
    view = await m.alice.deployment("web")
    live = {r.job_id for r in view.running}
    assert a not in live and b in live and len(live) == 2
    stopped = await m.alice.job(a)
    assert stopped.state == "settled" and stopped.seconds_used == 40
    assert stopped.settlement is not None
    assert stopped.settlement.node_pay + stopped.settlement.treasury_fee \
        + stopped.settlement.stakers_fee == 40 * 1000  # healthy time only
    assert stopped.settlement.refund == 300_000 - 40_000
    kinds = [e.kind for e in (await m.alice.deployment_events("web")).events]
    assert kinds.count("replica_posted") == 3 and "replica_unhealthy" in kinds
    assert failed_at == int(m.clock.t) - 10


async def test_the_stable_url_forwards_to_a_healthy_replica(
        market: Market, replica_server: str) -> None:
    m = market
    await m.alice.faucet("10")
    await m.node.register_node(HW, ["cpu"])
    d = await m.alice.create_deployment(strategy="infinite", spec=SERVICE, replicas=1,
                                        timeout=300, market="cpu")
    with pytest.raises(Exception, match="no healthy replica"):
        await m.bob.request("GET", f"/d/{d.id}/8080/", signed=False)
    await _run(m, m.node, replica_server)
    r = await m.alice._http.get(f"/d/{d.id}/8080/some/path?x=1")
    assert r.status_code == 200 and r.text.endswith("/some/path?x=1")
    r = await m.alice._http.get(f"/d/{d.id}/9999/")
    assert r.status_code == 404


async def test_simple_extend_runs_past_its_timeout_until_max_spend(market: Market) -> None:
    m = market
    await m.alice.faucet("10")
    await m.node.register_node(HW, ["cpu"])
    d = await m.alice.create_deployment(strategy="simple-extend", spec=BUSYBOX_SPEC,
                                        timeout=100, lead_s=20, market="cpu",
                                        max_spend="0.25")
    job = (await m.node.poll(wait=0)).job
    assert job is not None
    await m.node.start_job(job.id)
    m.clock.t += 85
    m.coord.reconcile_deployments(int(m.clock.t))
    assert (await m.alice.job(job.id)).timeout == 200
    m.clock.t += 100
    m.coord.reconcile_deployments(int(m.clock.t))
    assert (await m.alice.job(job.id)).timeout == 200  # 0.1 + 0.1 + 0.1 > 0.25
    events = [e.kind for e in (await m.alice.deployment_events(d.id)).events]
    assert events.count("extended") == 1 and events[-1] == "out_of_funds"


async def test_bad_deployments_are_clear_errors_and_change_nothing(market: Market) -> None:
    m = market
    await m.alice.faucet("10")
    with m.coord.store.uow(write=False) as uow:
        before = (uow.ledger.head(), uow.jobs.count_by_state())
    with pytest.raises(InvalidInput, match="unknown strategy"):
        await m.alice.create_deployment(strategy="forever", spec=SERVICE, market="cpu")
    with pytest.raises(InvalidInput, match="schedule"):
        await m.alice.create_deployment(strategy="scheduled", spec=SERVICE, market="cpu",
                                        schedule="every minute")
    with pytest.raises(InvalidInput, match="exposed port"):
        await m.alice.create_deployment(strategy="infinite", spec=BUSYBOX_SPEC, market="cpu")
    with pytest.raises(InvalidInput, match="market's range"):
        await m.alice.create_deployment(strategy="simple", spec=SERVICE, market="cpu",
                                        timeout=601)
    with m.coord.store.uow(write=False) as uow:
        assert (uow.ledger.head(), uow.jobs.count_by_state()) == before
    d = await m.alice.create_deployment(strategy="simple", spec=SERVICE, market="cpu")
    with pytest.raises(Forbidden):
        await m.bob.deployment(d.id)
    with pytest.raises(DeploymentNotFound):
        await m.alice.deployment("no-such")
    with pytest.raises((Forbidden, DeploymentNotFound)):
        await m.bob.deployment_action(d.id, "stop")
    await m.alice.deployment_action(d.id, "archive")
    with pytest.raises(Conflict, match="archived"):
        await m.alice.update_deployment(d.id, replicas=2)
    with m.coord.store.uow(write=False) as uow:
        assert uow.ledger.balance(TREASURY) >= 0
