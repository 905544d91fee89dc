"""Local settlement: NOS lives only in the ledger; nothing to send, nothing to check.

The use cases already move the deposit into escrow and pay out in the ledger, so this
backend's checks and handlers do nothing.
"""

from __future__ import annotations

from typing import Final

from nosgrid.core.events import Event, JobPosted, JobSettled, UsageBilled
from nosgrid.store.db import Store, UnitOfWork


class LocalSettlement:
    """The default backend: the ledger is the money."""

    name = "local"

    def check_post(self, uow: UnitOfWork, client: str, deposit: int) -> None:
        return None

    def check_stake(self, uow: UnitOfWork, owner: str, amount: int) -> None:
        return None

    def on_job_settled(self, uow: UnitOfWork, event: JobSettled) -> None:
        return None

    def on_stake_moved(self, uow: UnitOfWork, event: Event) -> None:
        return None

    def on_usage_billed(self, uow: UnitOfWork, event: UsageBilled) -> None:
        return None

    def on_job_posted(self, uow: UnitOfWork, event: JobPosted) -> None:
        pass

    def on_pool_payout(self, uow: UnitOfWork, event: Event) -> None:
        return None

    def after_money_moved(self, event: Event) -> None:
        return None

    async def start(self, store: Store) -> None:
        return None

    async def stop(self) -> None:
        return None


LOCAL: Final = LocalSettlement()
