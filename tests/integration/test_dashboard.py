"""The dashboard in-process: its JSON routes (through the SDK), its pages, bad input."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from api_fixtures import BUSYBOX_SPEC, Market

from nosgrid.coordinator.services import economics
from nosgrid.core.errors import NosgridError
from nosgrid.core.ledger import hash_body


async def _register(m: Market) -> None:
    await m.node.register_node({"cpu_cores": 4, "memory_mb": 4096}, ["cpu"])


async def _run_one_job(m: Market) -> str:
    await m.alice.faucet("100")
    await _register(m)
    posted = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60)
    polled = await m.node.poll(wait=0)
    assert polled.job is not None and polled.job.id == posted.id
    await m.node.start_job(posted.id)
    m.clock.t += 5
    await m.node.finish_job(posted.id, seconds_used=5)
    return posted.id


async def test_node_stats_show_earnings_uptime_and_jobs(market: Market) -> None:
    m = market
    job_id = await _run_one_job(m)
    job = await m.alice.job(job_id)
    assert job.state == "settled" and job.settlement is not None
    for _ in range(3):  # three heartbeats 10 s apart: 20 s of uptime
        await m.node.heartbeat()
        m.clock.t += 10
    stats = await m.node.node_stats(m.node.pubkey)
    assert stats.jobs_run == 1 and stats.jobs_by_state == {"settled": 1}
    assert stats.earned_total == job.settlement.node_pay
    assert stats.earnings[-1].earned == job.settlement.node_pay and len(stats.earnings) == 14
    assert 0 < stats.uptime_24h <= 1 and stats.uptime_7d == stats.uptime_24h
    assert [q.market for q in stats.queue] == ["cpu"]
    # a waiting node is first of one in its market's queue
    await m.node.poll(wait=0)
    (queue,) = (await m.node.node_stats(m.node.pubkey)).queue
    assert queue.position == 1 and queue.waiting == 1 and queue.share == 1.0
    listing = await m.alice.nodes()
    assert listing.total == 1 and listing.nodes[0].id == m.node.pubkey


async def test_market_stats_count_the_queue_and_throughput(market: Market) -> None:
    m = market
    await _run_one_job(m)
    await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60)
    stats = await m.alice.market_stats("cpu")
    assert stats.queue_length == 1 and stats.finished_1h == 1 and stats.finished_24h == 1
    assert stats.gpu_seconds_24h == 5 and stats.jobs_by_state == {"settled": 1, "queued": 1}
    with pytest.raises(NosgridError) as err:
        await m.alice.market_stats("nope")
    assert err.value.http_status == 404


async def test_ledger_entries_carry_what_their_hash_covers(market: Market) -> None:
    m = market
    await _run_one_job(m)
    page = await m.alice.ledger_entries(0, limit=3)
    assert [e.seq for e in page.entries] == [0, 1, 2] and page.next == 3
    assert all(e.hash_ok and e.links_ok for e in page.entries)
    for e in page.entries:  # anyone recomputes the hash from the fields answered
        body = {"seq": e.seq, "kind": e.kind, "ref": e.ref, "at": e.at,
                "postings": e.postings, "prev_hash": e.prev_hash, "meta": e.meta}
        assert hash_body(body) == e.hash
    later = await m.alice.ledger_entries(page.next or 0, limit=500)
    assert later.entries[0].prev_hash == page.entries[-1].hash and later.entries[0].links_ok
    assert later.next is None and later.head_seq == later.entries[-1].seq
    wallets = await m.alice.ledger_accounts(prefix="wallet:")
    assert {a.name for a in wallets.accounts} >= {f"wallet:{m.alice.pubkey}"}


async def test_tokenomics_and_validation(market: Market) -> None:
    m = market
    tk = await m.alice.tokenomics(epochs=10)
    assert len(tk.emission) == 10 and tk.emission[-1].cumulative == sum(
        p.release for p in tk.emission)
    assert sum(a.amount for a in tk.allocation) == tk.total_supply and tk.last_epoch == -1
    ok = await m.alice.validate_job(json.dumps(BUSYBOX_SPEC))
    assert ok.valid and ok.ops == 1 and ok.spec_hash
    bad = await m.alice.validate_job('{"version": "0.1", "type": "container", "ops": [{}]}')
    assert not bad.valid and bad.errors and any("ops" in e for e in bad.errors)


async def test_pages_render_and_bad_input_is_a_clear_error(market: Market) -> None:
    m = market
    await _run_one_job(m)
    async with httpx.AsyncClient(transport=m.transport, base_url="http://coordinator") as web:
        for path in ("/", "/markets/cpu", "/nodes", f"/nodes/{m.node.pubkey}", "/ledger",
                     "/ledger?from_seq=0&limit=2", "/tokenomics", "/console"):
            r = await web.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            assert r.headers["content-type"].startswith("text/html") and "<main" in r.text
        node_page = (await web.get(f"/nodes/{m.node.pubkey}")).text
        assert "<svg" in node_page and "Uptime 24 h" in node_page
        for asset in ("dash.js", "dash.css", "favicon.svg"):
            assert (await web.get(f"/static/{asset}")).status_code == 200
        missing = await web.get("/nodes/NoSuchNode")
        assert missing.status_code == 404 and "not registered" in missing.text
        assert (await web.get("/static/../app.py")).status_code == 404
        assert (await web.get("/static/other.js")).json()["error"]["code"] == "not_found"
        r = await web.get("/ledger?limit=0")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"
        r = await web.post("/v1/jobs/validate", json={"spec": {}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"
        before = await m.alice.ledger_summary()
        r = await web.get(f"/v1/nodes/{m.node.pubkey}/alerts?idle_minutes=0")
        assert r.status_code == 400
        assert (await m.alice.ledger_summary()) == before


async def test_alerts_stream_tells_when_a_node_goes_offline(market: Market) -> None:
    m = market
    await _register(m)

    async def go_offline() -> None:
        await asyncio.sleep(1.0)  # the stream has sent its status and waits for a change
        with m.coord.store.uow() as uow:
            uow.nodes.set(m.node.pubkey, status="offline")
            uow.commit()

    async with httpx.AsyncClient(transport=m.transport, base_url="http://coordinator") as web:
        r, _ = await asyncio.gather(
            web.get(f"/v1/nodes/{m.node.pubkey}/alerts?max_s=3"), go_offline())
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [block.splitlines() for block in r.text.strip().split("\n\n")]
    assert events[0] == ["retry: 1000"] and events[1][0] == "event: status"
    assert json.loads(events[1][1].removeprefix("data: "))["status"] == "online"
    assert events[2][0] == "event: alert" and len(events) == 3
    assert json.loads(events[2][1].removeprefix("data: "))["kind"] == "offline"


async def test_node_list_pages(market: Market) -> None:
    m = market
    await _register(m)
    await m.node2.register_node({"cpu_cores": 2, "memory_mb": 2048}, ["cpu"])
    first = await m.alice.nodes(limit=1)
    assert first.total == 2 and first.online == 2 and len(first.nodes) == 1 and first.next == 1
    second = await m.alice.nodes(offset=first.next or 0, limit=1)
    assert second.next is None and {first.nodes[0].id, second.nodes[0].id} == {
        m.node.pubkey, m.node2.pubkey}
    with pytest.raises(NosgridError) as err:
        await m.alice.nodes(limit=0)
    assert err.value.http_status == 400


async def test_standings_read_in_bulk_are_the_ones_read_one_by_one(market: Market) -> None:
    m = market
    await _run_one_job(m)  # the node has a reputation and a job done
    await m.node2.faucet("10")
    await m.node2.register_node({"cpu_cores": 2, "memory_mb": 2048}, ["cpu"])
    await m.node2.change_stake("stake", amount="5", days=14)
    now = int(m.clock.t)
    ids = [m.node.pubkey, m.node2.pubkey, "NotANode"]
    with m.coord.store.uow(write=False) as uow:
        many = economics.node_standings(uow, ids, now)
        assert many == {n: economics.node_standing(uow, n, now) for n in ids}
    assert many[m.node2.pubkey]["stake"] > 0 and many[m.node.pubkey]["jobs_done"] == 1
