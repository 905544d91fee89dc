"""The settlement backend seam: what the job services ask of ``local`` or ``solana``.

The services stay synchronous and chain-free: inside their unit of work they only ask the
backend to *check* a deposit and to *enqueue* a settled job's payout; the solana backend
writes an outbox row there, and its sender task does the on-chain part after commit.
The backend travels with the unit of work (:class:`SettlementStore` hands out units of
work that carry it), so no service signature changes and no global state is needed.

>>> from nosgrid.settlement.local import LocalSettlement
>>> store = SettlementStore.wrap(Store.open("sqlite://"), LocalSettlement())
>>> with store.uow() as uow:
...     settlement_of(uow).name
'local'
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sqlalchemy import Engine

from nosgrid.core.jobs.state import Job
from nosgrid.core.ledger import JournalEntry
from nosgrid.store.db import Store, UnitOfWork


@runtime_checkable
class SettlementBackend(Protocol):
    """Where NOS really moves. ``check_*`` and ``on_*`` run inside the caller's unit of
    work and must not do I/O beyond it; ``start``/``stop`` own background work."""

    name: str

    def check_post(self, uow: UnitOfWork, client: str, deposit: int) -> None:
        """Raise a typed error if ``client`` cannot fund ``deposit``."""
        ...

    def on_settled(self, uow: UnitOfWork, job: Job, entry: JournalEntry) -> None:
        """``entry`` (kind ``job.settled``) was appended: arrange its payout."""
        ...

    def check_stake(self, uow: UnitOfWork, owner: str, amount: int) -> None:
        """Raise a typed error if ``owner`` cannot fund a stake (or top-up) of ``amount``."""
        ...

    def on_stake_entry(self, uow: UnitOfWork, entry: JournalEntry) -> None:
        """``entry`` (a ``stake.*`` or ``slash`` entry) was appended: arrange its moves in
        and out of the stake and rewards vaults."""
        ...

    def on_usage_entry(self, uow: UnitOfWork, entry: JournalEntry, owner: str) -> None:
        """``entry`` (``gateway.usage``) pays nodes and the treasury for tokens served to
        ``owner``'s keys, out of their holds: arrange the payout from ``owner``."""
        ...

    def on_pool_payout(self, uow: UnitOfWork, entry: JournalEntry) -> None:
        """``entry`` pays keys out of a protocol pool (audit pay from ``audit_pool``, an
        epoch's rewards from ``rewards_pool``): arrange the transfers."""
        ...

    async def start(self, store: Store) -> None:
        """Start background work (the outbox sender) against ``store``."""
        ...

    async def stop(self) -> None:
        """Stop background work; safe to call twice."""
        ...


class SettlementUnitOfWork(UnitOfWork):
    """A unit of work that knows the market's settlement backend."""

    def __init__(self, engine: Engine, settlement: SettlementBackend, *,
                 write: bool = True) -> None:
        super().__init__(engine, write=write)
        self.settlement = settlement


class SettlementStore(Store):
    """A :class:`Store` whose units of work carry ``settlement``."""

    def __init__(self, engine: Engine, settlement: SettlementBackend) -> None:
        super().__init__(engine)
        self.settlement = settlement

    @classmethod
    def wrap(cls, store: Store, settlement: SettlementBackend) -> SettlementStore:
        """The same database, with ``settlement`` attached to every unit of work."""
        return cls(store.engine, settlement)

    def uow(self, *, write: bool = True) -> UnitOfWork:
        return SettlementUnitOfWork(self.engine, self.settlement, write=write)


def settlement_of(uow: UnitOfWork) -> SettlementBackend:
    """The backend a unit of work carries; local settlement when it carries none."""
    if isinstance(uow, SettlementUnitOfWork):
        return uow.settlement
    from nosgrid.settlement.local import LOCAL

    return LOCAL
