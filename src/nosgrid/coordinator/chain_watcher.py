"""The request watcher: reads payments into the request vault from chain and acts on them.

Per pass::

    signatures_for(vault, after=cursor) ──► for each, oldest first, ONE transaction:
        record the payment (once per signature) + move the cursor to it, COMMIT
    then for each request still ``seen``, ONE transaction: post its job or refund it

The cursor lives in the database (``chain_cursors``), written with what it covers, so a
restarted coordinator reads on from where it stopped; a signature read twice (a replay,
an adapter that lost its place) is recorded once (``chain_requests`` is keyed by it).
It talks to the chain only through the ``SolanaChain`` protocol (LiteSVM or RPC).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Final

from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import chain_requests
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.core.errors import NosgridError
from nosgrid.settlement import request_vault
from nosgrid.settlement.onchain import SolanaBackend
from nosgrid.settlement.requests import payment_into
from nosgrid.store.receipts import ChainRequestRepo, CursorRepo, RequestStatus

log = logging.getLogger(__name__)

CURSOR: Final = "request_vault"


@dataclass
class WatchStats:
    """What one pass did."""

    read: int = 0
    recorded: int = 0
    posted: list[str] = field(default_factory=list)
    refunded: int = 0


class RequestWatcher:
    """Watches ``backend``'s request vault for ``coord``."""

    def __init__(self, coord: Coordinator, backend: SolanaBackend) -> None:
        vault = backend.settlement.request_vault
        if vault is None:
            raise ValueError("this market has no request vault")
        self.coord = coord
        self.backend = backend
        self.vault = str(vault)

    async def pass_once(self, *, act: bool = True) -> WatchStats:
        """Read new payments (and, with ``act``, post or refund what they ask)."""
        stats = WatchStats()
        store, chain = self.coord.store, self.backend.chain
        with store.uow(write=False) as uow:
            cursor = CursorRepo(uow.conn).get(CURSOR)
        for signature in await chain.signatures_for(self.vault, after=cursor):
            tx = await chain.transaction(signature)
            payment = payment_into(tx, self.vault) if tx is not None else None
            stats.read += 1
            with store.uow() as uow:
                if payment is not None and payment.amount > 0:
                    stats.recorded += request_vault.record_payment(
                        uow, self.vault, payment, int(self.coord.now()))
                CursorRepo(uow.conn).set(CURSOR, signature, int(self.coord.now()))
                uow.commit()
        if act:
            await self.act(stats)
        return stats

    async def act(self, stats: WatchStats | None = None) -> WatchStats:
        """Post or refund every recorded request still waiting (also after a crash)."""
        stats = stats or WatchStats()
        store, s = self.coord.store, self.coord.settings
        with store.uow(write=False) as uow:
            waiting = chain_requests.pending(uow)
        for request in waiting:
            with store.uow() as uow:
                job = chain_requests.process_request(
                    uow, self.vault, request.signature, int(self.coord.now()),
                    blobs=self._blob, default_market=s.default_market, oracle=s.oracle)
                if job is not None:
                    job = job_services.dispatch(
                        uow, job, int(self.coord.now()), self.coord.matcher)
                done = ChainRequestRepo(uow.conn).get(request.signature)
                uow.commit()
            if job is not None:
                stats.posted.append(job.id)
            elif done is not None and done.status is RequestStatus.REFUNDING:
                stats.refunded += 1
        if (stats.posted or stats.refunded) and self.backend.sender is not None:
            self.backend.sender.wake.set()  # refunds to send
        return stats

    def _blob(self, sha256: str) -> bytes | None:
        try:
            path = self.coord.blobs.open(sha256)
        except NosgridError:
            return None
        return path.read_bytes() if path.stat().st_size <= 1 << 20 else None

    async def run(self, interval_s: float = 1.0) -> None:
        """Pass every ``interval_s`` until cancelled; a failed pass is logged and retried."""
        while True:
            try:
                await self.pass_once()
            except Exception:  # keep watching; nothing is marked done that was not
                log.exception("request watcher pass failed")
            await asyncio.sleep(interval_s)


async def start(coord: Coordinator) -> asyncio.Task[None] | None:
    """The watcher's task when the installed settlement has a request vault."""
    backend = coord.settlement
    if not isinstance(backend, SolanaBackend) or backend.settlement.request_vault is None:
        return None
    return asyncio.create_task(RequestWatcher(coord, backend).run())


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
