"""An in-process coordinator (ASGITransport) with an injectable clock, and SDK clients."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest_asyncio
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.sdk.client import AsyncClient

BUSYBOX_SPEC = {
    "version": "0.1",
    "type": "container",
    "ops": [{"type": "container/run", "id": "hello",
             "args": {"image": "localhost/nosgrid-busybox:test", "cmd": "echo hello"}}],
}


class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


@dataclass
class Market:
    coord: Coordinator
    clock: Clock
    admin: AsyncClient
    alice: AsyncClient
    bob: AsyncClient
    node: AsyncClient
    node2: AsyncClient
    transport: httpx.ASGITransport

    def client(self, kp: Keypair | None = None) -> AsyncClient:
        return AsyncClient("http://coordinator", kp or Keypair(), transport=self.transport,
                           clock=self.clock)


@pytest_asyncio.fixture
async def market(tmp_path: Path) -> AsyncIterator[Market]:
    clock = Clock()
    admin_kp = Keypair()
    settings = CoordinatorSettings(db=str(tmp_path / "c.db"), data_dir=tmp_path,
                                   admin_keys=frozenset({str(admin_kp.pubkey())}), faucet=True)
    app = create_app(settings, clock=clock, background=False)
    transport = httpx.ASGITransport(app=app)
    mk = lambda kp: AsyncClient("http://coordinator", kp, transport=transport,  # noqa: E731
                                clock=clock)
    m = Market(app.state.coordinator, clock, mk(admin_kp), mk(Keypair()), mk(Keypair()),
               mk(Keypair()), mk(Keypair()), transport)
    await m.admin.create_market({"name": "cpu", "price_per_second": 1000, "max_timeout": 600,
                                 "fee_bps": 500})
    yield m
    for c in (m.admin, m.alice, m.bob, m.node, m.node2):
        await c.aclose()
