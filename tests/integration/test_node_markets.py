"""Which markets a node serves follows the markets, its stake and its pins, without a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from alembic import command
from alembic.config import Config
from api_fixtures import BUSYBOX_SPEC, Market
from sqlalchemy import insert

from nosgrid.store import tables as t
from nosgrid.store.db import MIGRATIONS, make_engine, migrate
from nosgrid.store.repositories import NodeRepo

HW = {"cpu_cores": 2, "memory_mb": 4096}
NOS = 10**6


async def _markets(m: Market) -> list[str]:
    return (await m.alice.node(m.node.pubkey)).markets


async def test_a_node_that_pinned_nothing_joins_a_market_created_later(market: Market) -> None:
    m = market
    reg = await m.node.register_node(HW, [])
    assert reg.markets == ["cpu"]
    waiting = asyncio.create_task(m.node.poll(wait=5))
    await asyncio.sleep(0.05)  # the node waits on the long-poll, serving `cpu` only
    await m.admin.create_market({"name": "batch", "price_per_second": 10})
    assert await _markets(m) == ["batch", "cpu"]
    await asyncio.sleep(0.05)
    assert (await m.alice.market("batch")).nodes_waiting == 1  # its poll waits there too
    await m.alice.faucet("10")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="batch", timeout=10)
    assert job.state == "assigned" and job.node == m.node.pubkey
    got = await asyncio.wait_for(waiting, 2)
    assert got.job is not None and got.job.id == job.id


async def test_a_pinned_node_does_not_join_other_markets(market: Market) -> None:
    m = market
    assert (await m.node.register_node(HW, ["cpu"])).markets == ["cpu"]
    await m.admin.create_market({"name": "batch", "price_per_second": 10})
    await m.node.heartbeat()
    assert await _markets(m) == ["cpu"]
    await m.alice.faucet("10")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="batch", timeout=10)
    assert job.state == "queued"
    assert (await m.node.poll(wait=0)).job is None


async def test_a_node_pinned_to_a_market_that_does_not_exist_yet_joins_it(market: Market) -> None:
    """… and its waiting poll, registered under no market at all, is woken by the job."""
    m = market
    reg = await m.node.register_node(HW, ["gpu"])
    assert reg.markets == [] and reg.rejected == {"gpu": ["no such market"]}
    waiting = asyncio.create_task(m.node.poll(wait=5))
    await asyncio.sleep(0.05)
    await m.admin.create_market({"name": "gpu", "price_per_second": 10})
    assert await _markets(m) == ["gpu"]
    await m.alice.faucet("10")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="gpu", timeout=10)
    got = await asyncio.wait_for(waiting, 2)
    assert got.job is not None and got.job.id == job.id


async def test_a_market_the_hardware_does_not_meet_is_not_joined(market: Market) -> None:
    m = market
    await m.node.register_node(HW, [])
    await m.admin.create_market({"name": "big", "price_per_second": 10, "min_memory_mb": 65536})
    assert await _markets(m) == ["cpu"]


async def test_stake_rising_above_a_minimum_joins_and_falling_under_it_leaves(
    market: Market,
) -> None:
    m = market
    await m.admin.create_market({"name": "staked", "price_per_second": 10,
                                 "min_stake": 50 * NOS})
    reg = await m.node.register_node(HW, [])
    assert reg.markets == ["cpu"] and "stake" in reg.rejected["staked"][0]
    await m.node.faucet("100")
    await m.node.request("POST", "/v1/stake", json_body={"action": "stake", "amount": "60",
                                                         "days": 14})
    beat = await m.node.heartbeat()
    assert beat.markets == ["cpu", "staked"] == await _markets(m)
    await m.node.request("POST", "/v1/stake", json_body={"action": "unstake"})
    beat = await m.node.heartbeat()
    assert beat.markets == ["cpu"] == await _markets(m)


async def test_a_slash_under_a_markets_minimum_leaves_it(market: Market) -> None:
    m = market
    await m.admin.create_market({"name": "staked", "price_per_second": 10,
                                 "min_stake": 995 * NOS // 10})  # 99.5 NOS
    await m.node.faucet("100")
    await m.node.request("POST", "/v1/stake", json_body={"action": "stake", "amount": "100",
                                                         "days": 30})
    await m.node.register_node(HW, ["cpu", "staked"])
    assert await _markets(m) == ["cpu", "staked"]
    await m.alice.faucet("10")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60)
    await m.node.poll(wait=0)
    await m.node.start_job(job.id)
    m.clock.t += 100
    await m.node.heartbeat()
    assert m.coord.maintenance()["expired"] == 1  # missed its deadline: 1 NOS slashed
    assert await _markets(m) == ["cpu"]


async def test_each_heartbeat_re_evaluates_the_markets(market: Market) -> None:
    """The safety net: a node row whose markets went stale (a row from before the node
    remembered its pins, say) is put right by the node's next heartbeat."""
    m = market
    await m.node.register_node(HW, [])
    with m.coord.store.uow() as uow:
        uow.nodes.set_markets(m.node.pubkey, [])
        uow.commit()
    assert await _markets(m) == []
    assert (await m.node.heartbeat()).markets == ["cpu"] == await _markets(m)


def test_migration_0010_keeps_what_each_node_served_as_its_pins(tmp_path: Path) -> None:
    """Rows from before 0010 do not say what the operator asked for: the markets a node was
    accepted into become its pins, so no node starts serving a market nobody chose."""
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0009")
        for node_id, markets in (("n1", ["cpu"]), ("n2", [])):
            conn.execute(insert(t.nodes).values(
                id=node_id, hardware=json.dumps(HW), markets=json.dumps(markets),
                status="online", registered_at=0, last_heartbeat=0.0))
        conn.commit()
    migrate(engine)
    with engine.connect() as conn:
        nodes = NodeRepo(conn)
        assert nodes.get("n1")["pinned_markets"] == ["cpu"]
        assert nodes.get("n2")["pinned_markets"] == []
    engine.dispose()
