"""Staking, rewards, slashing, jail and weighted dispatch through the coordinator API."""

from __future__ import annotations

import asyncio

import pytest
from api_fixtures import BUSYBOX_SPEC, Market

from nosgrid.coordinator.services import economics
from nosgrid.core.errors import InsufficientFunds, NosgridError, StakeLocked
from nosgrid.core.markets import NodeCandidate
from nosgrid.core.reputation import WeightedMatcher

HW = {"cpu_cores": 2, "memory_mb": 4096}
DAY = 86_400


async def test_stake_unstake_withdraw(market: Market) -> None:
    m = market
    await m.alice.faucet("1000")
    view = await m.alice.request("POST", "/v1/stake",
                                 json_body={"action": "stake", "amount": "400", "days": 365})
    assert view["amount_nos"] == "400" and view["score"] == 1_600_000_000 and view["active"]
    assert (await m.alice.balance()).balance_nos == "600"
    with pytest.raises(InsufficientFunds):
        await m.alice.request("POST", "/v1/stake", json_body={"action": "top_up",
                                                              "amount": "601"})
    view = await m.alice.request("POST", "/v1/stake", json_body={"action": "unstake"})
    assert view["score"] == 0 and not view["active"]
    with pytest.raises(StakeLocked):
        await m.alice.request("POST", "/v1/stake", json_body={"action": "withdraw"})
    m.clock.t += 365 * DAY // 4
    view = await m.alice.request("POST", "/v1/stake", json_body={"action": "withdraw"})
    assert view["amount_nos"] == "300"
    assert (await m.alice.balance()).balance_nos == "700"
    assert (await m.alice.ledger_verify()).ok


async def test_min_stake_gates_the_market(market: Market) -> None:
    m = market
    await m.admin.create_market({"name": "staked", "price_per_second": 10, "min_stake": 50 * 10**6})
    reg = await m.node.register_node(HW, ["cpu", "staked"])
    assert reg.markets == ["cpu"] and "stake" in reg.rejected["staked"][0]
    await m.node.faucet("100")
    await m.node.request("POST", "/v1/stake", json_body={"action": "stake", "amount": "60",
                                                         "days": 14})
    reg = await m.node.register_node(HW, ["cpu", "staked"])
    assert reg.markets == ["cpu", "staked"]


async def test_missed_deadline_is_slashed_with_evidence(market: Market) -> None:
    m = market
    await m.node.faucet("100")
    await m.node.request("POST", "/v1/stake", json_body={"action": "stake", "amount": "100",
                                                         "days": 30})
    await m.node.register_node(HW, ["cpu"])
    await m.alice.faucet("10")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60)
    await m.node.poll(wait=0)
    await m.node.start_job(job.id)
    m.clock.t += 100
    await m.node.heartbeat()
    assert m.coord.maintenance()["expired"] == 1
    assert (await m.alice.balance()).balance_nos == "10"  # refunded in full
    stake = await m.node.request("GET", "/v1/stake")
    # 1% of 100 NOS = 1 NOS is above the floor of one job price (0.06 NOS)
    assert stake["amount_nos"] == "99"
    info = await m.alice.node(m.node.pubkey)
    assert info.offences == 1
    with m.coord.store.uow(write=False) as uow:
        entry = uow.ledger.entries()[-1]
    assert entry.kind == "slash" and entry.meta["job_id"] == job.id
    assert len(entry.meta["evidence"]) == 64  # the hash of the refund's journal entry
    assert (await m.alice.ledger_verify()).ok


async def test_repeated_abandonment_jails_the_node(market: Market) -> None:
    m = market
    await m.node.register_node(HW, ["cpu"])
    await m.alice.faucet("10")
    for _ in range(3):
        job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10)
        got = await m.node.poll(wait=0)
        assert got.job.id == job.id
        await m.node.fail_job(job.id, reason="gave up", fault="node")
    assert (await m.alice.node(m.node.pubkey)).jailed_until is not None
    await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10)
    assert (await m.node.poll(wait=0)).job is None  # jailed: no work
    # the three abandoned jobs were refunded; the fourth waits in escrow for another node
    assert (await m.alice.balance()).balance_nos == "9.99"


async def test_stakers_share_of_fees_can_be_claimed(market: Market) -> None:
    m = market
    await m.admin.create_market({"name": "shared", "price_per_second": 1_000, "fee_bps": 1_000,
                                 "stakers_share_bps": 5_000})
    await m.bob.faucet("10")
    await m.bob.request("POST", "/v1/stake", json_body={"action": "stake", "amount": "10",
                                                        "days": 14})
    await m.node.register_node(HW, ["shared"])
    await m.alice.faucet("10")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="shared", timeout=100)
    await m.node.poll(wait=0)
    await m.node.start_job(job.id)
    m.clock.t += 100
    done = await m.node.finish_job(job.id, seconds_used=100)
    assert done.settlement.stakers_fee == 5_000
    pending = (await m.bob.request("GET", "/v1/stake"))["pending_rewards"]
    assert 5_000 - 1 <= pending <= 5_000  # rounded down; the dust stays in the pool
    res = await m.bob.request("POST", "/v1/rewards/claim")
    assert res["claimed"] == pending
    assert (await m.bob.balance()).balance == pending
    with pytest.raises(NosgridError):
        await m.bob.request("POST", "/v1/rewards/claim")
    assert (await m.bob.ledger_verify()).ok


async def test_dispatch_is_weighted_and_reproducible(market: Market) -> None:
    m = market
    await m.node.register_node(HW, ["cpu"])
    await m.node2.register_node(HW, ["cpu"])
    polls = [asyncio.create_task(n.poll(wait=3)) for n in (m.node, m.node2)]
    await asyncio.sleep(0.05)
    await m.alice.faucet("1")
    with m.coord.store.uow(write=False) as uow:
        head = uow.ledger.head()
        assert head is not None
        cands = economics.candidates(uow, uow.markets.get("cpu"), int(m.clock()))
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10)
    # anyone can recompute the pick from the ledger head before the post and the job id
    with m.coord.store.uow(write=False) as uow:
        entries = uow.ledger.entries()
    before = next(e for e in entries if e.ref == job.id and e.kind == "job.posted")
    seed = economics.dispatch_seed(job.id, before.hash)
    expected = WeightedMatcher().pick(tuple(cands), seed)
    assert isinstance(expected, NodeCandidate) and job.node == expected.node_id
    results = await asyncio.gather(*polls)
    assert sorted(r.job is not None for r in results) == [False, True]


async def test_market_nodes_sorted_by_standing(market: Market) -> None:
    m = market
    await m.node.register_node(HW, ["cpu"])
    await m.node2.faucet("100")
    await m.node2.request("POST", "/v1/stake", json_body={"action": "stake", "amount": "100",
                                                          "days": 365})
    await m.node2.register_node(HW, ["cpu"])
    rows = await m.alice.request("GET", "/v1/markets/cpu/nodes", signed=False)
    assert [r["id"] for r in rows] == [m.node2.pubkey, m.node.pubkey]


async def test_epoch_emission_pays_completed_work_once(market: Market) -> None:
    m = market
    await m.node.register_node(HW, ["cpu"])
    await m.alice.faucet("10")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=100)
    await m.node.poll(wait=0)
    await m.node.start_job(job.id)
    m.clock.t += 50
    await m.node.finish_job(job.id, seconds_used=50)
    earned = (await m.node.balance()).balance
    m.clock.t += 7 * DAY  # the first epoch (7 days) is over
    await m.node.heartbeat()
    assert m.coord.maintenance()["epochs"] == 1
    assert m.coord.maintenance()["epochs"] == 0  # applied once
    reward = (await m.node.balance()).balance - earned
    assert reward == 50 * 10_000  # capped at 0.01 NOS per verified second
    summary = await m.alice.request("GET", "/v1/ledger/summary", signed=False)
    assert summary["rewards_pool"] == 250_000 * 10**6 - reward
    assert (await m.alice.ledger_verify()).ok
