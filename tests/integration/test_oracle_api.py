"""The price oracle through the coordinator API on a real SQLite store: reporters, reports,
asks, settled jobs, published prices, an equivocator slashed with both reports as
evidence, a USD market's post recording the rate, and bad input changing nothing."""

from __future__ import annotations

import json

import pytest
from api_fixtures import BUSYBOX_SPEC, Market
from solders.keypair import Keypair
from sqlalchemy import func, select

from nosgrid.core.errors import (
    BadSignature,
    Conflict,
    Forbidden,
    InvalidInput,
    MarketNotFound,
    NodeNotFound,
    NosgridError,
)
from nosgrid.core.events import OraclePricePublished, ReportEquivocated
from nosgrid.core.identity import request_message
from nosgrid.core.pricing import epoch_of, report_hash, signature_valid
from nosgrid.sdk.client import AsyncClient, reporter_consent
from nosgrid.store import tables as t

HW = {"cpu_cores": 2, "memory_mb": 4096}
EPOCH = 600


def _start_of_epoch(m: Market) -> int:
    """Move the clock to 10 s into the next epoch; returns that epoch."""
    epoch = epoch_of(int(m.clock.t)) + 1
    m.clock.t = float(epoch * EPOCH + 10)
    return epoch


async def _staked(m: Market, nos: str = "100") -> AsyncClient:
    c = m.client(Keypair())
    await c.faucet("300")
    await c.change_stake("stake", amount=nos, days=14)
    return c


async def _reporter(m: Market, operator: AsyncClient | None = None) -> AsyncClient:
    """A staked operator reporting with its own key (or a second key of ``operator``)."""
    if operator is None:
        c = await _staked(m)
        await c.register_reporter(c.pubkey, reporter_consent(c.keypair, c.pubkey))
        return c
    key = m.client(Keypair())
    await key.register_reporter(operator.pubkey, reporter_consent(operator.keypair,
                                                                  key.pubkey))
    return key


def _rows(m: Market) -> tuple[int, int, int]:
    with m.coord.store.uow(write=False) as uow:
        return tuple(int(uow.conn.execute(select(func.count()).select_from(tab)).scalar_one())
                     for tab in (t.oracle_reports, t.oracle_reporters, t.oracle_prices))


async def test_reports_make_the_price_and_a_minority_cannot_move_it(market: Market) -> None:
    m = market
    before = await m.alice.market_price("cpu")
    assert before.source == "configured" and before.price_per_second == 1000
    assert "no oracle price yet" in before.reason
    honest = [await _reporter(m) for _ in range(3)]
    attacker = await _reporter(m)
    second_key = await _reporter(m, operator=attacker)  # the attacker's operator counts once
    epoch = _start_of_epoch(m)
    for c, price in zip(honest, (2000, 2100, 1900), strict=True):
        assert (await c.submit_report("cpu", price, epoch)).status == "accepted"
    for c in (attacker, second_key):
        await c.submit_report("cpu", 10**9, epoch)
    prov = (await m.alice.market_price("cpu")).provisional
    assert prov.sources == 4 and prov.price == 2000 and not prov.final
    assert prov.band_low == 2000 and prov.band_high == 2100
    assert [o.outlier for o in prov.operators if o.value == 10**9] == [True]
    published: list[OraclePricePublished] = []
    m.coord.store.handlers.after(OraclePricePublished, published.append)
    m.clock.t += EPOCH
    assert m.coord.maintenance()["oracle_prices"] == 2  # cpu, and nos_usd (no sources)
    assert {(e.market, e.price) for e in published} == {("cpu", 2000), ("nos_usd", None)}
    assert m.coord.maintenance()["oracle_prices"] == 0  # an epoch is closed once
    price = await m.alice.market_price("cpu")
    assert (price.source, price.price_per_second, price.epoch) == ("oracle", 2000, epoch)
    assert price.charged_price_per_second == 1000  # a NOS market still charges its price
    detail = await m.alice.market("cpu")
    assert detail.price is not None and detail.price.source == "oracle"
    # the attacker's operator lost weight; the honest ones gained
    with m.coord.store.uow(write=False) as uow:
        standings = uow.pricing.standings("cpu")
    assert standings[attacker.pubkey].weight_bps < standings[honest[0].pubkey].weight_bps
    # the honest reports stay fresh for two epochs: the next epoch's price is the same
    await attacker.submit_report("cpu", 10**9, epoch + 1)
    m.clock.t += EPOCH
    m.coord.maintenance()
    price = await m.alice.market_price("cpu")
    assert (price.source, price.price_per_second, price.epoch) == ("oracle", 2000, epoch + 1)
    # then only the attacker is fresh: too few sources, the configured price, visibly
    m.clock.t += EPOCH
    await attacker.submit_report("cpu", 10**9, epoch + 3)
    m.clock.t += EPOCH
    m.coord.maintenance()
    fallback = await m.alice.market_price("cpu")
    assert fallback.source == "configured" and fallback.price_per_second == 1000
    assert "too few sources: 1 fresh independent source, 3 needed" in fallback.reason
    # sources again: the price comes back
    for c, price_ in zip(honest, (2000, 2100, 1900), strict=True):
        await c.submit_report("cpu", price_, epoch + 4)
    m.clock.t += EPOCH
    m.coord.maintenance()
    price = await m.alice.market_price("cpu")
    assert (price.source, price.price_per_second) == ("oracle", 2000)
    # posting without a max price suggests one at the oracle price
    await m.alice.faucet("10")
    posted = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60)
    assert posted.suggested_max_price == 2000 * 60
    assert posted.suggested_price_source == "oracle" and posted.nos_usd_rate is None
    assert posted.price_per_second == 1000
    capped = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60,
                                    max_price="0.01")
    assert capped.suggested_max_price is None


async def test_equivocation_is_slashed_with_both_reports_as_evidence(market: Market) -> None:
    m = market
    cheat = await _reporter(m)
    epoch = _start_of_epoch(m)
    first = await cheat.submit_report("cpu", 1500)  # the SDK asks for the open epoch
    assert first.epoch == epoch
    again = await cheat.submit_report("cpu", 1500, epoch)
    assert again.status == "duplicate" and again.hash == first.hash
    seen: list[ReportEquivocated] = []
    m.coord.store.handlers.after(ReportEquivocated, seen.append)
    second = await cheat.submit_report("cpu", 1700, epoch)
    assert second.status == "equivocation" and second.slashed == 20 * 10**6  # 20% of 100
    assert second.conflicts_with == [first.hash, second.hash]
    assert [e.reports for e in seen] == [(first.hash, second.hash)]
    stake = await cheat.stake()
    assert stake.amount == 80 * 10**6
    with pytest.raises(Conflict):
        await cheat.submit_report("cpu", 1600, epoch)
    # both reports stay as evidence, and anyone can check the signature of each
    for digest in (first.hash, second.hash):
        r = await m.alice.oracle_report(digest)
        assert r.evidence
        s = r.signed
        msg = request_message(s["method"], s["path"], json.dumps(s["body"]).encode(),
                              s["timestamp"], s["nonce"])
        assert report_hash(msg) == digest and signature_valid(r.source, r.signature, msg)
    with m.coord.store.uow(write=False) as uow:
        entry = uow.ledger.entries()[-1]
    assert entry.kind == "slash" and entry.meta["offence"] == "equivocation"
    assert entry.meta["reports"] == [first.hash, second.hash]
    # evidence is never pruned, and the operator counts nowhere this epoch
    m.clock.t += EPOCH
    m.coord.maintenance()
    m.clock.t += 10 * EPOCH
    m.coord.maintenance()
    assert (await m.alice.oracle_report(first.hash)).evidence
    with m.coord.store.uow(write=False) as uow:
        assert uow.pricing.standings("cpu")[cheat.pubkey].weight_bps == 100
    assert (await m.alice.ledger_verify()).ok


async def test_usd_market_converts_at_the_oracle_rate_and_records_it(market: Market) -> None:
    m = market
    await m.admin.create_market({"name": "gpu-usd", "price_per_second": 500,
                                 "price_usd_micros_per_second": 100, "max_timeout": 600})
    await m.alice.faucet("10")
    fallback = await m.alice.post_job(spec=BUSYBOX_SPEC, market="gpu-usd", timeout=60)
    assert fallback.price_per_second == 500 and fallback.nos_usd_rate is None
    assert "no NOS/USD rate" in fallback.charged_reason
    reporters = [await _reporter(m) for _ in range(3)]
    epoch = _start_of_epoch(m)
    for c, rate in zip(reporters, (500_000, 510_000, 490_000), strict=True):
        await c.submit_report("nos_usd", rate, epoch)
    m.clock.t += EPOCH
    m.coord.maintenance()
    rate = await m.alice.nos_usd()
    assert rate.rate == 500_000 and rate.rate_usd == "0.5" and rate.epoch == epoch
    view = await m.alice.market_price("gpu-usd")
    assert view.charged_price_per_second == 200 and view.nos_usd_rate == 500_000
    posted = await m.alice.post_job(spec=BUSYBOX_SPEC, market="gpu-usd", timeout=60)
    assert posted.price_per_second == 200 and posted.nos_usd_rate == 500_000
    assert posted.deposit == 200 * 60
    job = await m.alice.job(posted.id)
    assert job.nos_usd_rate == 500_000 and job.price_per_second == 200
    with m.coord.store.uow(write=False) as uow:
        assert uow.jobs.get(posted.id).terms.nos_usd_rate == 500_000  # type: ignore[union-attr]


async def test_asks_and_settled_jobs_are_sources(market: Market) -> None:
    m = market
    nodes = []
    for _ in range(2):
        n = await _staked(m)
        await n.register_node(HW, ["cpu"])
        nodes.append(n)
    _start_of_epoch(m)
    await nodes[0].publish_ask("cpu", 1200)
    await nodes[0].publish_ask("cpu", 1100)  # replaces the first
    await nodes[1].publish_ask("cpu", 900)
    # a settled job of a staked node is a third source, at the price it ran for
    await m.alice.faucet("10")
    job = await m.alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=60)
    runner = nodes[0]  # nobody was waiting: the first node to poll takes it
    assert (await runner.poll(wait=0)).job is not None
    await runner.start_job(job.id)
    m.clock.t += 5
    await runner.finish_job(job.id, seconds_used=5)
    prov = (await m.alice.market_price("cpu")).provisional
    kinds = {o.operator: o.kinds for o in prov.operators}
    assert kinds[nodes[1].pubkey] == ["ask"]
    assert kinds[runner.pubkey] == ["ask", "settled"]
    assert prov.sources == 2  # the two nodes: one operator counts once across kinds
    unstaked = m.client(Keypair())
    await unstaked.register_node(HW, ["cpu"])
    with pytest.raises(Forbidden):
        await unstaked.publish_ask("cpu", 1000)


async def test_bad_input_is_refused_and_changes_nothing(market: Market) -> None:
    m = market
    rep = await _reporter(m)
    epoch = _start_of_epoch(m)
    stranger = m.client(Keypair())
    before = _rows(m)
    cases: list[tuple[type[NosgridError], object]] = [
        (Forbidden, stranger.submit_report("cpu", 1000, epoch)),  # not a reporter
        (InvalidInput, rep.submit_report("cpu", 1000, epoch + 1)),  # a future epoch
        (InvalidInput, rep.submit_report("cpu", 1000, epoch - 1)),  # a past epoch
        (MarketNotFound, rep.submit_report("nope", 1000, epoch)),
        (InvalidInput, rep.submit_report("cpu", 0, epoch)),
        (InvalidInput, rep.submit_report("cpu", -5, epoch)),
        (InvalidInput, rep.submit_report("cpu", 10**20, epoch)),
        (InvalidInput, rep.submit_report("nos_usd", 10**13, epoch)),
        (InvalidInput, rep.submit_report("cpu", 10**15, epoch)),  # above the supply
        (BadSignature, stranger.register_reporter(rep.pubkey, "1" * 88)),  # forged consent
        (BadSignature, stranger.register_reporter(
            rep.pubkey, reporter_consent(stranger.keypair, stranger.pubkey))),  # own consent
        (InvalidInput, stranger.register_reporter("not-a-key", "x" * 88)),
        (Forbidden, stranger.register_reporter(  # an operator without stake
            stranger.pubkey, reporter_consent(stranger.keypair, stranger.pubkey))),
        (NodeNotFound, stranger.publish_ask("cpu", 1000)),
        (InvalidInput, rep.publish_ask("nos_usd", 1000)),
        (MarketNotFound, m.alice.market_price("nope")),
    ]
    for error, call in cases:
        with pytest.raises(error):
            await call  # type: ignore[misc]
    other = await _staked(m)
    with pytest.raises(Conflict):  # a reporter key belongs to one operator
        await rep.register_reporter(other.pubkey, reporter_consent(other.keypair, rep.pubkey))
    # a forged request signature is a 401 before anything is read
    resp = await m.transport.handle_async_request(_forged(rep, epoch))
    assert resp.status_code == 401
    assert _rows(m) == before


def _forged(c: AsyncClient, epoch: int) -> object:
    import httpx

    from nosgrid.sdk.wallet import sign_headers

    body = json.dumps({"epoch": epoch, "price": 1000}).encode()
    headers = sign_headers(c.keypair, "POST", "/v1/markets/cpu/reports",
                           json.dumps({"epoch": epoch, "price": 1}).encode(),
                           now=c._clock() if c._clock else None)
    headers["content-type"] = "application/json"
    return httpx.Request("POST", "http://coordinator/v1/markets/cpu/reports", content=body,
                         headers=headers)
