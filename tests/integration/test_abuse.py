"""Abuse resistance through the real app and SQLite: budgets (429 + Retry-After), the
posting fee, funds before parsing, idempotency keys, batch posts, queue caps and order,
and the nodes-per-operator cap. Each refusal is checked to change nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from api_fixtures import BUSYBOX_SPEC, Clock
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.services.accounts import verify_ledger
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.budgets import BudgetParams, Rate
from nosgrid.core.errors import (
    BadSignature,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidInput,
    InvalidJobSpec,
    RateLimited,
)
from nosgrid.core.jobs.queueing import MAX_HEAD_START_S
from nosgrid.core.ledger import TREASURY, wallet
from nosgrid.sdk.client import AsyncClient
from nosgrid.sdk.wallet import sign_headers

HW = {"cpu_cores": 2, "memory_mb": 4096}
TIGHT = BudgetParams(keyed={**BudgetParams().keyed, "post": Rate(1.0, 5.0)},
                     anonymous=Rate(1.0, 10.0))


class Door:
    """An in-process coordinator whose budgets run on a clock the test moves."""

    def __init__(self, tmp: Path, budgets: BudgetParams, **settings: Any) -> None:
        self.clock = Clock()
        self.admin_kp = Keypair()
        s = CoordinatorSettings(db=str(tmp / "c.db"), data_dir=tmp, faucet=True,
                                admin_keys=frozenset({str(self.admin_kp.pubkey())}),
                                budgets=budgets, **settings)
        self.app = create_app(s, clock=self.clock, background=False)
        self.coord = self.app.state.coordinator
        self.coord.budgets.clock = self.clock
        self.transport = httpx.ASGITransport(app=self.app)
        self.raw = httpx.AsyncClient(transport=self.transport, base_url="http://coordinator")
        self.clients: list[AsyncClient] = []
        self.admin = self.client(self.admin_kp)

    def client(self, kp: Keypair | None = None, *, retries: int = 0) -> AsyncClient:
        c = AsyncClient("http://coordinator", kp or Keypair(), transport=self.transport,
                        clock=self.clock)
        c.rate_limit_retries = retries
        self.clients.append(c)
        return c

    def state(self) -> tuple[Any, ...]:
        with self.coord.store.uow(write=False) as uow:
            return (uow.ledger.head(), uow.ledger.balances(), uow.jobs.count_by_state())

    def nonces(self) -> int:
        with self.coord.store.uow(write=False) as uow:
            return len(uow.nonces.recent(0))

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()
        await self.raw.aclose()


@pytest_asyncio.fixture
async def door(tmp_path: Path) -> AsyncIterator[Door]:
    d = Door(tmp_path, TIGHT)
    await d.admin.create_market({"name": "cpu", "price_per_second": 1000, "max_timeout": 600,
                                 "fee_bps": 500, "posting_fee": 50_000})
    yield d
    await d.close()


# ------------------------------------------------------------------------------ budgets


async def test_unsigned_requests_share_a_small_budget_and_get_429_with_retry_after(
        door: Door) -> None:
    answers = [await door.raw.get("/v1/jobs") for _ in range(14)]
    codes = [r.status_code for r in answers]
    assert codes[:10] == [401] * 10  # the burst: on to the signature check, which refuses
    assert codes[10:] == [429] * 4
    refused = answers[-1]
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"]["route_class"] == "read"
    door.clock.t += 3  # three tokens flow back
    assert [(await door.raw.get("/v1/jobs")).status_code for _ in range(4)] == \
        [401, 401, 401, 429]


async def test_a_thousand_fresh_keys_cost_what_one_costs(door: Door) -> None:
    """Keys the market does not know (unfunded, unstaked, no node) share the address's
    budget, so new keys buy an attacker nothing; a funded key has its own."""
    funded = door.client()
    await funded.faucet("5")
    codes = []
    for _ in range(30):
        with pytest.raises((InsufficientFunds, RateLimited)) as err:
            await door.client().post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10)
        codes.append(err.value.code)
    assert codes.count("insufficient_funds") <= 10  # the shared burst; the rest wait
    assert codes[-1] == "rate_limited"
    posted = await funded.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10)
    assert posted.state == "queued"  # the honest, funded key is not held up by them


async def test_a_funded_key_is_held_to_its_own_post_budget(door: Door) -> None:
    spam = door.client()
    await spam.faucet("100")
    before_refusals = dict(door.coord.budgets.refused)
    ok = refused = 0
    for _ in range(12):
        try:
            job = await spam.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=5)
            await spam.cancel(job.id)
            ok += 1
        except RateLimited as err:
            assert err.details["route_class"] == "post"
            refused += 1
    assert ok == 5 and refused == 7  # TIGHT: a burst of 5 posts, then 1 per second
    assert door.coord.budgets.refused["post"] - before_refusals.get("post", 0) == 7
    with door.coord.store.uow(write=False) as uow:
        assert uow.ledger.balance(TREASURY) >= 5 * 50_000  # every post paid its fee


async def test_the_sdk_waits_for_retry_after_and_gets_through(door: Door) -> None:
    c = door.client(retries=3)
    c.max_retry_wait = 0.0  # the fake clock does not move by itself: retry at once
    await c.faucet("100")
    for _ in range(5):
        await c.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=5)
    with pytest.raises(RateLimited):
        await c.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=5)


async def test_stake_and_reputation_grow_a_budget() -> None:
    from nosgrid.core.budgets import STAKE_UNIT, standing_multiplier
    assert standing_multiplier(0, 0.0) < standing_multiplier(STAKE_UNIT, 0.0) \
        < standing_multiplier(STAKE_UNIT, 1.0) <= 8.0


async def test_malformed_signature_headers_are_refused_at_the_door(door: Door) -> None:
    before, nonces = door.state(), door.nonces()
    r = await door.raw.post("/v1/jobs", content=b"{}", headers={
        "x-nosgrid-pubkey": "not a key!", "content-type": "application/json"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "bad_signature"
    assert door.state() == before and door.nonces() == nonces


async def test_open_streams_are_capped(tmp_path: Path) -> None:
    d = Door(tmp_path, replace(BudgetParams(), max_open_streams=0))
    try:
        r = await d.raw.get("/v1/jobs/x/logs?follow=true")
        assert r.status_code == 429 and r.json()["error"]["details"]["route_class"] == "stream"
    finally:
        await d.close()


# --------------------------------------------------------------------- posting and money


async def test_an_unfunded_key_is_refused_before_anything_is_read_or_written(
        door: Door) -> None:
    poor = door.client()
    before, nonces = door.state(), door.nonces()
    with pytest.raises(InsufficientFunds, match="wallet is empty"):
        await poor.post_job(spec_text="{ not even json", market="cpu")
    assert door.state() == before and door.nonces() == nonces


async def test_the_posting_fee_goes_to_the_treasury_and_is_kept_on_cancel(door: Door) -> None:
    alice = door.client()
    await alice.faucet("1")
    with door.coord.store.uow(write=False) as uow:
        treasury = uow.ledger.balance(TREASURY)
    job = await alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10)
    assert job.deposit == 10_000
    await alice.cancel(job.id)
    with door.coord.store.uow(write=False) as uow:
        assert uow.ledger.balance(TREASURY) - treasury == 50_000
        assert uow.ledger.balance(wallet(alice.pubkey)) == 1_000_000 - 50_000
        assert verify_ledger(uow).ok


async def test_a_wallet_that_covers_the_deposit_but_not_the_fee_is_refused(door: Door) -> None:
    alice = door.client()
    await alice.faucet("0.055")  # deposit 0.01 + fee 0.05 = 0.06
    before = door.state()
    with pytest.raises(InsufficientFunds, match=r"posting fee of 0\.05 NOS"):
        await alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10)
    assert door.state() == before


# ---------------------------------------------------------------------------- idempotency


async def test_the_same_idempotency_key_posts_once(door: Door) -> None:
    alice = door.client()
    await alice.faucet("1")
    first = await alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10,
                                 idempotency_key="order-42")
    state = door.state()
    again = await alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10,
                                 idempotency_key="order-42")
    assert again.id == first.id and again.deposit == first.deposit
    assert door.state() == state  # no second job, no second escrow, no second fee
    with pytest.raises(IdempotencyKeyReused):
        await alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=20,
                             idempotency_key="order-42")
    assert door.state() == state
    bob = door.client()  # keys are per signer
    await bob.faucet("1")
    assert (await bob.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10,
                               idempotency_key="order-42")).id != first.id


async def test_idempotent_cancel_and_faucet(door: Door) -> None:
    alice = door.client()
    await alice.faucet("1", idempotency_key="f1")
    await alice.faucet("1", idempotency_key="f1")
    assert (await alice.balance()).balance == 1_000_000
    job = await alice.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=10)
    first = await alice.cancel(job.id, idempotency_key="c1")
    again = await alice.cancel(job.id, idempotency_key="c1")  # not "already cancelled"
    assert first.state == again.state == "settled"
    r = await door.raw.post("/v1/faucet", content=json.dumps({"amount": "1"}).encode(),
                            headers={"idempotency-key": "bad key with spaces",
                                     "content-type": "application/json",
                                     **sign_headers(alice.keypair, "POST", "/v1/faucet",
                                                    json.dumps({"amount": "1"}).encode(),
                                                    now=door.clock())})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]["message"]


# ---------------------------------------------------------------------------- batch posts


async def test_a_batch_is_posted_all_or_none(door: Door) -> None:
    alice = door.client()
    await alice.faucet("1")
    posted = await alice.post_jobs([{"spec": BUSYBOX_SPEC, "market": "cpu", "timeout": 10}
                                    for _ in range(3)])
    assert len({j.id for j in posted.jobs}) == 3
    before = door.state()
    bad = {"spec": {**BUSYBOX_SPEC, "ops": [{"type": "container/run", "id": "x"}]},
           "market": "cpu"}
    with pytest.raises(InvalidJobSpec, match=r"jobs\[1\]"):
        await alice.post_jobs([{"spec": BUSYBOX_SPEC, "market": "cpu", "timeout": 10}, bad])
    too_dear = [{"spec": BUSYBOX_SPEC, "market": "cpu", "timeout": 600} for _ in range(2)]
    with pytest.raises(InsufficientFunds, match=r"jobs\[1\].*no job of the batch"):
        await alice.post_jobs(too_dear)
    assert door.state() == before


async def test_a_batch_over_the_limit_is_refused(tmp_path: Path) -> None:
    d = Door(tmp_path, BudgetParams(), max_batch_jobs=2)
    try:
        await d.admin.create_market({"name": "cpu", "price_per_second": 1, "max_timeout": 60})
        alice = d.client()
        await alice.faucet("1")
        with pytest.raises(InvalidInput, match="at most 2 jobs"):
            await alice.post_jobs([{"spec": BUSYBOX_SPEC} for _ in range(3)])
    finally:
        await d.close()


# ----------------------------------------------------------------------- queue cap, order


async def test_a_client_may_hold_only_so_many_queued_jobs(tmp_path: Path) -> None:
    d = Door(tmp_path, BudgetParams(), max_queued_per_client=3)
    try:
        await d.admin.create_market({"name": "cpu", "price_per_second": 1, "max_timeout": 60})
        alice = d.client()
        await alice.faucet("1")
        jobs = [await alice.post_job(spec=BUSYBOX_SPEC, timeout=5) for _ in range(3)]
        before = d.state()
        with pytest.raises(RateLimited, match="3 jobs queued"):
            await alice.post_job(spec=BUSYBOX_SPEC, timeout=5)
        assert d.state() == before
        await alice.cancel(jobs[0].id)
        await alice.post_job(spec=BUSYBOX_SPEC, timeout=5)  # room again
    finally:
        await d.close()


async def test_priority_favours_good_clients_but_never_starves_an_old_job(
        tmp_path: Path) -> None:
    d = Door(tmp_path, BudgetParams())
    try:
        await d.admin.create_market({"name": "cpu", "price_per_second": 1, "max_timeout": 60})
        spammer, honest, node = d.client(), d.client(), d.client()
        for c in (spammer, honest):
            await c.faucet("10")
        for _ in range(20):  # a record of posting and cancelling
            await spammer.cancel((await spammer.post_job(spec=BUSYBOX_SPEC, timeout=5)).id)
        old = await spammer.post_job(spec=BUSYBOX_SPEC, timeout=5, max_price="0.000001")
        d.clock.t += 10
        newer = await honest.post_job(spec=BUSYBOX_SPEC, timeout=5)
        await node.register_node(HW, ["cpu"])
        first = (await node.poll(wait=0)).job
        assert first is not None and first.id == newer.id  # 10 s younger, served first
        await node.start_job(first.id)
        await node.finish_job(first.id)
        d.clock.t += MAX_HEAD_START_S + 1
        late = await honest.post_job(spec=BUSYBOX_SPEC, timeout=5)
        second = (await node.poll(wait=0)).job
        assert second is not None and second.id == old.id, late.id  # no starvation
    finally:
        await d.close()


# -------------------------------------------------------------------- nodes per operator


async def test_an_operator_holds_at_most_so_many_nodes(tmp_path: Path) -> None:
    d = Door(tmp_path, BudgetParams(), max_nodes_per_operator=2)
    try:
        operator = Keypair()
        for _ in range(2):
            reg = await d.client().register_node(HW, operator=operator)
            assert reg.node_id
        before = d.state()
        with pytest.raises(RateLimited, match="2 nodes registered"):
            await d.client().register_node(HW, operator=operator)
        assert d.state() == before
        forged = d.client()
        with pytest.raises(BadSignature, match="operator_consent"):
            await forged.request("POST", "/v1/nodes/register", json_body={
                "hardware": HW, "operator": str(operator.pubkey()),
                "operator_consent": str(Keypair().sign_message(b"x"))})
    finally:
        await d.close()
