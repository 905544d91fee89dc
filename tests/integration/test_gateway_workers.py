"""Two coordinators on one database, each with its gateway worker, against a fake
llama.cpp-shaped engine on real uvicorn: the cap holds across both, a revocation through
one reaches the other, and a killed one's pending charges are paid by the survivor."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from gateway_fixtures import HW, SERVICE_SPEC, FakeEngine, GatewayWorld, free_port, serve
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.gateway import Gateway, GatewaySettings
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.ledger import TREASURY, wallet
from nosgrid.core.metering import hold_account
from nosgrid.sdk.client import AsyncClient
from nosgrid.store.gateway import GatewayRepo

MSG = [{"role": "user", "content": "one two three"}]
COST = 3 * 1 + 2 * 2  # 3 prompt words, max_tokens=2 (default prices 1 and 2)


@dataclass
class Two:
    a: GatewayWorld  # coordinator A: the clients' signed calls go here
    b_url: str
    b_app: Any
    kill_b: Callable[[], Awaitable[None]]  # stop B's server

    @property
    def gw_b(self) -> Gateway:
        gw: Gateway = self.b_app.state.gateway
        return gw

    def oa(self, url: str, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=url + "/openai/v1", api_key=key, max_retries=0)

    def balances(self, *accounts: str) -> dict[str, int]:
        with self.a.gw.coord.store.uow(write=False) as uow:
            return {x: uow.ledger.balance(x) for x in accounts}

    def key_row(self, kid: str) -> dict[str, Any]:
        with self.a.gw.coord.store.uow(write=False) as uow:
            row = GatewayRepo(uow.conn).key(kid)
        assert row is not None
        return row

    def charges(self, worker: str) -> int:
        with self.a.gw.coord.store.uow(write=False) as uow:
            return len(GatewayRepo(uow.conn).charges_of(worker))

    def workers(self) -> set[str]:
        with self.a.gw.coord.store.uow(write=False) as uow:
            return {str(r["worker"]) for r in GatewayRepo(uow.conn).workers()}


@contextlib.asynccontextmanager
async def two_coordinators(tmp_path: Path, *, b_killed: bool = False,
                           **gw: Any) -> AsyncIterator[Two]:
    """Coordinators A and B (``create_app`` twice on one SQLite file), both on uvicorn.
    ``b_killed``: B's start-up and shutdown never run (its gateway only registers), so
    stopping its server is a kill: no flush, no release, its lease just stops."""
    admin_kp, alice_kp = Keypair(), Keypair()
    settings = CoordinatorSettings(db=str(tmp_path / "c.db"), data_dir=tmp_path,
                                   admin_keys=frozenset({str(admin_kp.pubkey())}), faucet=True)
    app_a = create_app(settings, background=False, gateway=GatewaySettings(**gw))
    app_b = create_app(settings, background=False, gateway=GatewaySettings(**gw))
    if b_killed:
        app_b.state.gateway.load()
    engine = FakeEngine()
    async with serve(app_a, free_port()) as url, serve(engine.app, free_port()) as engine_url, \
            contextlib.AsyncExitStack() as b_server:
        b_url = await b_server.enter_async_context(
            serve(app_b, free_port(), lifespan="off" if b_killed else "on"))
        admin, alice = AsyncClient(url, admin_kp), AsyncClient(url, alice_kp)
        node = AsyncClient(url, Keypair())
        await admin.create_market({"name": "cpu", "price_per_second": 10, "max_timeout": 3600,
                                   "fee_bps": 500})
        await alice.faucet("100")
        await node.register_node(HW, ["cpu"])
        try:
            yield Two(GatewayWorld(url, app_a, alice_kp, alice, node, admin, engine,
                                   engine_url), b_url, app_b, b_server.aclose)
        finally:
            for c in (admin, alice, node):
                await c.aclose()
    if b_killed:
        await app_b.state.gateway.http.aclose()
        await app_b.state.gateway.upstream.aclose()


async def until(check: Callable[[], Any], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def test_the_cap_holds_across_two_coordinators(tmp_path: Path) -> None:
    async with two_coordinators(tmp_path, topup_chunk=150, tick_s=0.1) as t:
        w = t.a
        await w.add_replica(w.node)  # the node reports to A
        await until(lambda: t.gw_b.registry.for_model("fake"), "B sees A's replica")
        cap = 700
        key = w.key(cap=cap)
        clients = {"a": t.oa(w.url, key), "b": t.oa(t.b_url, key)}
        kid = w.gw.authorize(f"Bearer {key}", None).kid
        served = dict.fromkeys(clients, 0)
        refused: set[str] = set()

        async def one(name: str) -> None:
            try:
                await clients[name].chat.completions.create(model="fake", messages=MSG,
                                                            max_tokens=2)
                served[name] += 1
            except openai.RateLimitError as exc:
                assert exc.code == "insufficient_quota"
                refused.add(name)

        for _round in range(200):  # both at once, then each again, until both refuse
            await asyncio.gather(*(one(n) for n in clients if n not in refused),
                                 *(one(n) for n in clients if n not in refused))
            row = t.key_row(kid)
            assert row["spent"] + row["held"] <= cap, row
            if refused == set(clients):
                break
        assert refused == set(clients)
        assert served["a"] > 0 and served["b"] > 0
        w.gw.flush(release_all=True)
        t.gw_b.flush(release_all=True)
        [usage] = (await w.alice.usage()).usage
        assert usage.cost == COST * (served["a"] + served["b"]) <= cap
        assert usage.requests == served["a"] + served["b"]
        row = t.key_row(kid)
        assert (row["spent"], row["held"]) == (usage.cost, 0)
        assert (await w.admin.ledger_verify()).ok


async def test_a_key_revoked_through_one_is_refused_by_the_other(tmp_path: Path) -> None:
    async with two_coordinators(tmp_path, tick_s=0.1, key_recheck_s=0.2) as t:
        w = t.a
        await w.add_replica(w.node)
        await until(lambda: t.gw_b.registry.for_model("fake"), "B sees A's replica")
        key = w.key()
        via_b = t.oa(t.b_url, key)
        await via_b.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        kid = t.gw_b.authorize(f"Bearer {key}", None).kid
        b_hold = hold_account(kid, t.gw_b.worker)
        assert t.balances(b_hold)[b_hold] > 0
        await w.alice.register_key(key, "shared")
        await w.alice.revoke_key(kid)  # through A
        deadline = time.monotonic() + 15
        while True:
            try:
                await via_b.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
            except openai.AuthenticationError as exc:
                assert exc.code == "invalid_api_key" and "revoked" in str(exc)
                break
            assert time.monotonic() < deadline, "B kept serving a revoked key"
            await asyncio.sleep(0.05)
        # B returns what it held for the key at its next flush, without a request
        await until(lambda: t.balances(b_hold)[b_hold] == 0, "B's hold returned",
                    timeout_s=t.gw_b.settings.flush_interval_s + 10)
        assert t.key_row(kid)["held"] == 0
        assert (await w.admin.ledger_verify()).ok


async def test_a_killed_coordinators_charges_are_paid_by_the_survivor(tmp_path: Path) -> None:
    async with two_coordinators(tmp_path, b_killed=True, tick_s=0.1, worker_lease_s=1.0,
                                flush_every=1000, flush_interval_s=3600) as t:
        w = t.a
        gw_b = t.gw_b
        await w.add_replica(w.node)
        gw_b.sync()  # B's own tick never runs (see two_coordinators)
        key = w.key()
        via_b = t.oa(t.b_url, key)
        for _ in range(3):
            await via_b.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        stream = await via_b.chat.completions.create(model="fake", messages=MSG, max_tokens=4,
                                                     stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream
                        if c.choices]) == "w0 w1 w2 w3 "
        kid = gw_b.authorize(f"Bearer {key}", None).kid
        b_hold = hold_account(kid, gw_b.worker)
        charged = 3 * COST + (3 + 4 * 2)
        # each charge was written when its request ended (the stream's once it settled) …
        await until(lambda: t.charges(gw_b.worker) == 4, "the stream's charge written")
        alice, node = str(w.alice_kp.pubkey()), w.node.pubkey
        before = t.balances(wallet(alice), wallet(node), TREASURY, b_hold)
        assert before[b_hold] > charged  # … and none is paid: B never flushed

        await t.kill_b()  # no shutdown: B's lease just stops being renewed
        assert gw_b.worker in t.workers()
        await until(lambda: gw_b.worker not in t.workers(), "A takes over the dead B",
                    timeout_s=20)
        after = t.balances(wallet(alice), wallet(node), TREASURY, b_hold)
        fee = charged * w.gw.settings.fee_bps // 10_000
        assert after[wallet(node)] - before[wallet(node)] == charged - fee
        assert after[TREASURY] - before[TREASURY] == fee
        assert after[b_hold] == 0
        assert after[wallet(alice)] - before[wallet(alice)] == before[b_hold] - charged
        assert t.charges(gw_b.worker) == 0
        [usage] = (await w.alice.usage()).usage
        assert (usage.requests, usage.cost) == (4, charged)
        assert t.key_row(kid)["spent"] == charged and t.key_row(kid)["held"] == 0
        assert (await w.admin.ledger_verify()).ok


async def test_a_worker_taken_over_while_alive_registers_again(tmp_path: Path) -> None:
    """A coordinator that only looked dead (suspended past its lease) finds its lease gone
    at its next write: it moves no money from the holds it had, registers again from the
    database's figures and bills from there; only the request it served from the stale
    books in between goes unbilled."""
    async with two_coordinators(tmp_path, b_killed=True, tick_s=0.1, worker_lease_s=1.0,
                                flush_every=1000, flush_interval_s=3600) as t:
        w, gw_b = t.a, t.gw_b
        await w.add_replica(w.node)
        gw_b.sync()
        key = w.key()
        via_b = t.oa(t.b_url, key)
        await via_b.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        kid = gw_b.authorize(f"Bearer {key}", None).kid
        await until(lambda: gw_b.worker not in t.workers(), "A takes over B", timeout_s=20)
        assert t.balances(hold_account(kid, gw_b.worker))[hold_account(kid, gw_b.worker)] == 0
        # B wakes up; A takes over nobody else from now on (B's own tick never runs here)
        w.gw.settings = dataclasses.replace(w.gw.settings, worker_lease_s=3600)
        await via_b.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        await until(lambda: gw_b.worker in t.workers(), "B registers again at its next write")
        await via_b.chat.completions.create(model="fake", messages=MSG, max_tokens=2)
        gw_b.flush(release_all=True)
        [usage] = (await w.alice.usage()).usage
        assert (usage.requests, usage.cost) == (2, 2 * COST)
        row = t.key_row(kid)
        assert (row["spent"], row["held"]) == (2 * COST, 0)
        assert (await w.admin.ledger_verify()).ok


async def test_deployments_are_shared_and_scaled_once(tmp_path: Path) -> None:
    """A deployment made through A is B's too; with both ticking, ``min: 1`` posts one
    replica, not one per coordinator; a cold start through B is served once the node
    reports to A; undeploying through B stops it for both."""
    async with two_coordinators(tmp_path, tick_s=0.05) as t:
        w, gw_b = t.a, t.gw_b
        await w.alice.deploy("fake", SERVICE_SPEC, market="cpu", min=1, max=2, idle_s=600)
        await until(lambda: "fake" in gw_b.deployments, "B sees A's deployment")
        await asyncio.sleep(0.5)  # ten ticks of each
        with w.gw.coord.store.uow(write=False) as uow:
            [job_id] = GatewayRepo(uow.conn).service_jobs("fake")
        await until(lambda: job_id in gw_b.starting, "B knows the replica is starting")
        via_b = t.oa(t.b_url, w.key())
        ask = asyncio.create_task(via_b.chat.completions.create(
            model="fake", messages=MSG, max_tokens=2))  # waits for the replica
        polled = await w.node.poll(wait=5)
        assert polled.job is not None and polled.job.id == job_id
        await w.node.start_job(job_id)
        await w.node.report_service(job_id, "llm", w.engine_url, True, model="fake")
        reply = await ask
        assert reply.choices[0].message.content == "w0 w1 "
        with w.gw.coord.store.uow(write=False) as uow:
            assert GatewayRepo(uow.conn).service_jobs("fake") == {job_id}
        assert [s.job_id for s in w.gw.cold_starts] == [job_id]  # A posted it
        assert gw_b.cold_starts == []
        async with AsyncClient(t.b_url, w.alice_kp) as alice_via_b:
            assert (await alice_via_b.undeploy("fake")).deleted
        await until(lambda: "fake" not in w.gw.deployments and not w.gw.registry.replicas,
                    "A forgets the deployment and its replica")
