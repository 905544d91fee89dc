"""Local settlement: NOS lives only in the ledger; nothing to send, nothing to check.

The job services already move the deposit into escrow and pay out in the ledger, so this
backend's hooks do nothing (a no-op outbox).
"""

from __future__ import annotations

from typing import Final

from nosgrid.core.jobs.state import Job
from nosgrid.core.ledger import JournalEntry
from nosgrid.store.db import Store, UnitOfWork


class LocalSettlement:
    """The default backend: the ledger is the money."""

    name = "local"

    def check_post(self, uow: UnitOfWork, client: str, deposit: int) -> None:
        return None

    def on_settled(self, uow: UnitOfWork, job: Job, entry: JournalEntry) -> None:
        return None

    def check_stake(self, uow: UnitOfWork, owner: str, amount: int) -> None:
        return None

    def on_stake_entry(self, uow: UnitOfWork, entry: JournalEntry) -> None:
        return None

    def on_usage_entry(self, uow: UnitOfWork, entry: JournalEntry, owner: str) -> None:
        return None

    def on_pool_payout(self, uow: UnitOfWork, entry: JournalEntry) -> None:
        return None

    async def start(self, store: Store) -> None:
        return None

    async def stop(self) -> None:
        return None


LOCAL: Final = LocalSettlement()
