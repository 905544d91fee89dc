"""The coordinator API in-process (httpx.ASGITransport): lifecycles, loops, pagination."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from api_fixtures import BUSYBOX_SPEC, Market

from nosgrid.core.errors import (
    Forbidden,
    IllegalTransition,
    InsufficientFunds,
    InvalidInput,
    InvalidJobSpec,
    MarketNotFound,
)

HW = {"cpu_cores": 2, "memory_mb": 4096}


async def _register(m: Market) -> None:
    reg = await m.node.register_node(HW, ["cpu"])
    assert reg.markets == ["cpu"]


async def test_full_lifecycle(market: Market) -> None:
    m = market
    await m.alice.faucet("10")
    await _register(m)
    waiting = asyncio.create_task(m.node.poll(wait=5))
    await asyncio.sleep(0.05)  # the node is now waiting on the long-poll
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    # a node is waiting, so the job is dispatched to it in the same transaction
    assert job.state == "assigned" and job.node == m.node.pubkey
    assert job.deposit_nos == "0.1"
    got = await asyncio.wait_for(waiting, 2)
    assert got.job.id == job.id and '"hello"' in got.spec
    await m.node.start_job(job.id)
    m.clock.t += 30
    await m.node.push_logs(job.id, [{"stream": "stdout", "data": "hello\n"}])
    done = await m.node.finish_job(job.id, seconds_used=30, exit_code=0)
    assert done.state == "settled"
    assert done.settlement.model_dump() == {"node_pay": 28_500, "treasury_fee": 1_500,
                                            "stakers_fee": 0, "refund": 70_000,
                                            "cost_nos": "0.03"}
    assert (await m.alice.balance()).balance_nos == "9.97"
    assert (await m.node.balance()).balance == 28_500
    logs = await m.alice.logs(job.id)
    assert [c.data for c in logs.chunks] == ["hello\n"]
    streamed = [c async for c in m.alice.follow_logs(job.id)]
    assert streamed[0].data == "hello\n"
    kinds = [e.kind for e in (await m.alice.journal()).entries]
    assert kinds == ["job.settled", "job.posted", "faucet"]
    assert (await m.alice.ledger_verify()).ok


async def test_cancel_refunds_and_cannot_run(market: Market) -> None:
    m = market
    await m.alice.faucet("1")
    await _register(m)
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=600)
    assert (await m.alice.balance()).balance_nos == "0.4"
    await m.alice.cancel(job.id)
    assert (await m.alice.balance()).balance_nos == "1"
    with pytest.raises(IllegalTransition):
        await m.alice.cancel(job.id)
    assert (await m.node.poll(wait=0)).job is None


async def test_deadline_passes_without_report_refunds(market: Market) -> None:
    m = market
    await m.alice.faucet("1")
    await _register(m)
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60)
    await m.node.poll(wait=0)
    await m.node.start_job(job.id)
    m.clock.t += 60 + 10
    await m.node.heartbeat()
    assert m.coord.maintenance()["expired"] == 0
    m.clock.t += 25
    await m.node.heartbeat()
    assert m.coord.maintenance()["expired"] == 1
    done = await m.alice.job(job.id)
    assert done.state == "settled" and done.fault == "node"
    assert (await m.alice.balance()).balance_nos == "1"


async def test_node_death_requeues_then_refunds(market: Market) -> None:
    m = market
    await m.alice.faucet("1")
    await _register(m)
    await m.node2.register_node(HW, ["cpu"])
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60)
    assert (await m.node.poll(wait=0)).job.id == job.id
    await m.node.start_job(job.id)
    m.clock.t += 31
    await m.node2.heartbeat()
    assert m.coord.maintenance()["requeued_or_refunded"] == 1
    assert (await m.alice.job(job.id)).state == "queued"
    # the second node takes it; the first node's late report is refused
    assert (await m.node2.poll(wait=0)).job.id == job.id
    with pytest.raises(Forbidden):
        await m.node.finish_job(job.id)
    for _ in range(2):  # node2 dies too, then a third attempt on node2 again
        m.clock.t += 31
        m.coord.maintenance()
        await m.node2.heartbeat()
        await m.node2.poll(wait=0)
    m.clock.t += 31
    m.coord.maintenance()
    final = await m.alice.job(job.id)
    assert final.state == "settled" and final.attempts == 3
    assert (await m.alice.balance()).balance_nos == "1"
    assert (await m.alice.ledger_verify()).ok


async def test_pagination(market: Market) -> None:
    m = market
    await m.alice.faucet("100")
    ids = [(await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10)).id
           for _ in range(7)]
    seen, cursor = [], None
    while True:
        page = await m.alice.jobs(limit=3, cursor=cursor)
        seen += [j.id for j in page.jobs]
        cursor = page.next
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert (await m.bob.jobs()).jobs == []


async def test_bad_posts_change_nothing(market: Market) -> None:
    m = market
    await m.alice.faucet("0.5")
    before = await m.alice.balance()
    with pytest.raises(InsufficientFunds):
        await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=600)
    with pytest.raises(MarketNotFound):
        await m.alice.post_job(spec=BUSYBOX_SPEC, market="nope")
    with pytest.raises(InvalidJobSpec) as err:
        await m.alice.post_job(spec={"version": "0.1", "type": "container",
                                     "ops": [{"id": "x"}]}, market="cpu")
    assert any(e.startswith("ops[0]") for e in err.value.errors)
    assert await m.alice.balance() == before
    assert (await m.alice.jobs()).jobs == []


async def test_yaml_spec_and_meta_terms(market: Market) -> None:
    m = market
    await m.alice.faucet("1")
    text = """
version: "0.1"
type: container
meta:
  nosgrid: {market: cpu, timeout: 20, max_price: "0.01"}
ops:
  - {type: container/run, id: a, args: {image: "localhost/nosgrid-busybox:test", cmd: [true]}}
"""
    job = await m.alice.post_job(spec_text=text.replace("[true]", "[\"true\"]"))
    assert job.market == "cpu" and job.timeout == 20 and job.deposit_nos == "0.01"


async def test_blob_access_follows_jobs(market: Market) -> None:
    m = market
    await m.alice.faucet("1")
    await _register(m)
    data = b"input rows\n"
    sha = await m.alice.upload_blob(data)
    assert await m.alice.download_blob(sha) == data
    with pytest.raises(Forbidden):
        await m.bob.download_blob(sha)
    spec = {**BUSYBOX_SPEC, "meta": {"nosgrid": {"inputs": [{"sha256": sha,
                                                             "path": "/inputs/rows.txt"}]}}}
    await m.bob.faucet("1")  # an unfunded key is refused before its definition is read
    with pytest.raises(InvalidInput, match="upload it first"):
        await m.bob.post_job(spec=spec, market="cpu")
    with pytest.raises(Forbidden):
        await m.node.download_blob(sha)
    job = await m.alice.post_job(spec=spec, market="cpu", timeout=10)
    await m.node.poll(wait=0)
    assert await m.node.download_blob(sha) == data  # assigned: the node may fetch inputs
    await m.node.start_job(job.id)
    out = await m.node.upload_blob(b"result\n")
    with pytest.raises(Forbidden):
        await m.alice.download_blob(out)
    await m.node.finish_job(job.id, outputs=[{"path": "/outputs/r", "sha256": out,
                                                 "size": 7}])
    assert await m.alice.download_blob(out) == b"result\n"


async def test_post_without_a_market_says_which_it_went_to(market: Market) -> None:
    m = market
    await m.alice.faucet("1")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, timeout=10)  # "cpu" is the only market
    assert (job.market, job.market_chosen_by, job.market_why) == ("cpu", "only",
                                                                  "the only market")
    assert (await m.alice.job(job.id)).market == "cpu"  # the job view shows it too
    await m.admin.create_market({"name": "gpu", "price_per_second": 1000, "max_timeout": 600})
    before = (await m.alice.balance(), len((await m.alice.jobs()).jobs))
    with pytest.raises(InvalidInput) as err:
        await m.alice.post_job(spec=BUSYBOX_SPEC, timeout=10)
    assert "(cpu, gpu)" in err.value.message and err.value.details["markets"] == ["cpu", "gpu"]
    assert (await m.alice.balance(), len((await m.alice.jobs()).jobs)) == before
    named = {**BUSYBOX_SPEC, "meta": {"nosgrid": {"market": "gpu"}}}
    job = await m.alice.post_job(spec=named, timeout=10)
    assert (job.market, job.market_chosen_by) == ("gpu", "definition")
    job = await m.alice.post_job(spec=named, market="cpu", timeout=10)
    assert (job.market, job.market_chosen_by) == ("cpu", "request")


async def test_the_coordinators_default_market(market: Market) -> None:
    m = market
    await m.admin.create_market({"name": "gpu", "price_per_second": 1000, "max_timeout": 600})
    m.coord.settings = dataclasses.replace(m.coord.settings, default_market="gpu")
    await m.alice.faucet("1")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, timeout=10)
    assert (job.market, job.market_chosen_by) == ("gpu", "default")
    m.coord.settings = dataclasses.replace(m.coord.settings, default_market="gone")
    with pytest.raises(MarketNotFound, match="the coordinator's default"):
        await m.alice.post_job(spec=BUSYBOX_SPEC, timeout=10)
