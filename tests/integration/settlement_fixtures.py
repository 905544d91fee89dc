"""An in-process coordinator settling on LiteSVM (the real SPL Token program), with SDK
clients whose keys sign their own approvals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from api_fixtures import BUSYBOX_SPEC, Clock
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.sdk import solana as solana_wallet
from nosgrid.sdk.client import AsyncClient
from nosgrid.sdk.models import JobView, SolanaSubmitted
from nosgrid.settlement.onchain import SolanaBackend
from nosgrid.settlement.sender import Sender, SenderStats
from nosgrid.store.db import Store

NOS = 1_000_000
HW = {"cpu_cores": 2, "memory_mb": 4096}
__all__ = ["BUSYBOX_SPEC", "HW", "NOS", "ChainMarket", "chain_market", "open_chain_market"]


@dataclass
class ChainMarket:
    coord: Coordinator
    backend: SolanaBackend
    store: Store
    clock: Clock
    admin: AsyncClient
    alice: AsyncClient
    node: AsyncClient
    transport: httpx.AsyncBaseTransport
    sender: Sender

    def client(self, kp: Keypair | None = None) -> AsyncClient:
        return AsyncClient("http://coordinator", kp or Keypair(), transport=self.transport,
                           clock=self.clock)

    async def fund(self, c: AsyncClient, nos: str = "100", approve: int = 10 * NOS
                   ) -> SolanaSubmitted:
        await solana_wallet.faucet(c, nos)
        return await solana_wallet.approve(c, approve)

    async def token_balance(self, owner: str) -> int:
        return (await self.backend.settlement.balances([owner]))[owner]

    async def send(self) -> SenderStats:
        return await self.sender.pass_once()

    async def run_job(self, c: AsyncClient, seconds: int, timeout: int = 100) -> JobView:
        job = await c.post_job(spec=BUSYBOX_SPEC, market="cpu", timeout=timeout)
        polled = await self.node.poll(wait=0)
        assert polled.job.id == job.id
        await self.node.start_job(job.id)
        self.clock.t += seconds
        return await self.node.finish_job(job.id, seconds_used=seconds, exit_code=0)

    async def close(self) -> None:
        for c in (self.admin, self.alice, self.node):
            await c.aclose()


async def open_chain_market(tmp_path: Path, *, batch_size: int = 1,
                            anchor_every: int = 0, **settings_: Any) -> ChainMarket:
    clock = Clock()
    admin_kp = Keypair()
    settings = CoordinatorSettings(db=str(tmp_path / "c.db"), data_dir=tmp_path,
                                   admin_keys=frozenset({str(admin_kp.pubkey())}), faucet=True,
                                   settlement="litesvm", anchor_every=anchor_every, **settings_)
    store = Store.open(settings.db_url, now=clock)
    backend = await SolanaBackend.litesvm(batch_size=batch_size, anchor_every=anchor_every)
    await backend.open(store, int(clock()))
    app = create_app(settings, store=store, clock=clock, background=False, settlement=backend)
    coord: Coordinator = app.state.coordinator
    transport = httpx.ASGITransport(app=app)

    def mk(kp: Keypair) -> AsyncClient:
        return AsyncClient("http://coordinator", kp, transport=transport, clock=clock)

    sender = Sender(coord.store, backend.settlement, batch_size=batch_size,
                    anchor_every=anchor_every, retry_after_s=0)
    m = ChainMarket(coord, backend, coord.store, clock, mk(admin_kp), mk(Keypair()),
                    mk(Keypair()), transport, sender)
    await m.admin.create_market({"name": "cpu", "price_per_second": 1000, "max_timeout": 600,
                                 "fee_bps": 500, "stakers_share_bps": 2000})
    await m.node.register_node(HW, ["cpu"])
    return m


@pytest_asyncio.fixture
async def chain_market(tmp_path: Path) -> AsyncIterator[ChainMarket]:
    m = await open_chain_market(tmp_path)
    yield m
    await m.close()
