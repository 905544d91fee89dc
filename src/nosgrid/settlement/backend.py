"""The settlement backend seam: what the coordinator asks of ``local`` or ``solana``.

The use cases stay synchronous and chain-free. Before spending a key's money they ask the
backend to *check* it (``check_post``, ``check_stake``: the unit of work carries the
backend as its :class:`~nosgrid.store.db.SettlementChecks`); after the money moved in the
ledger, the backend's *handlers* arrange the on-chain side of each money event inside the
same transaction (the solana backend writes outbox rows there, its sender task does the
on-chain part after commit). Which handler runs for which event is decided once, in
``coordinator/bootstrap.py``; nothing else picks or inspects the backend.

>>> from nosgrid.settlement.local import LOCAL
>>> isinstance(LOCAL, SettlementBackend)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from nosgrid.core.events import (
    AttestorRotated,
    Event,
    JobPosted,
    JobSettled,
    ReceiptIssued,
    UsageBilled,
)
from nosgrid.store.db import Store, UnitOfWork


@runtime_checkable
class SettlementBackend(Protocol):
    """Where NOS really moves. ``check_*`` and ``on_*`` run inside the caller's unit of
    work and do no I/O beyond it; ``start``/``stop`` own background work."""

    name: str

    def check_post(self, uow: UnitOfWork, client: str, deposit: int) -> None:
        """Raise a typed error if ``client`` cannot fund ``deposit``."""
        ...

    def check_stake(self, uow: UnitOfWork, owner: str, amount: int) -> None:
        """Raise a typed error if ``owner`` cannot fund a stake (or top-up) of ``amount``."""
        ...

    def on_job_settled(self, uow: UnitOfWork, event: JobSettled) -> None:
        """A job's escrow was paid out (``event.entry``): arrange its payout."""
        ...

    def on_stake_moved(self, uow: UnitOfWork, event: Event) -> None:
        """A stake deposit, withdrawal, rewards claim or slash (``event.entry``): arrange
        its moves in and out of the stake and rewards vaults."""
        ...

    def on_usage_billed(self, uow: UnitOfWork, event: UsageBilled) -> None:
        """Gateway tokens served to ``event.owner``'s keys were paid out of their holds:
        arrange the payout from the owner."""
        ...

    def on_job_posted(self, uow: UnitOfWork, event: JobPosted) -> None:
        """A job was posted (``event.posting_fee`` to the treasury, ``event.entry``):
        arrange the fee's transfer."""
        ...

    def on_pool_payout(self, uow: UnitOfWork, event: Event) -> None:
        """A protocol pool paid keys (audit pay from ``audit_pool``, an epoch's rewards from
        ``rewards_pool``; ``event.entry``): arrange the transfers."""
        ...

    def after_money_moved(self, event: Event) -> None:
        """After commit: start sending what the handlers queued."""
        ...

    async def start(self, store: Store) -> None:
        """Start background work (the outbox sender) against ``store``."""
        ...

    async def stop(self) -> None:
        """Stop background work; safe to call twice."""
        ...


@runtime_checkable
class ReceiptPublisher(Protocol):
    """A backend that also publishes receipts and attestor epochs on chain (issue 17)."""

    def on_receipt_issued(self, uow: UnitOfWork, event: ReceiptIssued) -> None:
        """Queue ``event``'s receipt for publication, in the transaction that issued it."""
        ...

    def on_attestor_rotated(self, uow: UnitOfWork, event: AttestorRotated) -> None:
        """Queue the new attestor epoch's Memo."""
        ...

    def observed_slot(self) -> int:
        """The chain slot a receipt issued now cites."""
        ...
