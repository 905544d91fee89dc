"""Account use cases: the dev faucet, balances, journals, and ledger verification."""

from __future__ import annotations

from typing import Final

from sqlalchemy import func, select

from nosgrid.core import reputation as rep_rules
from nosgrid.core.budgets import standing_multiplier
from nosgrid.core.errors import InvalidAmount, RateLimited
from nosgrid.core.ledger import Posting, VerifyReport, verify, wallet
from nosgrid.core.money import BASE_UNITS_PER_NOS, format_nos
from nosgrid.store import tables as t
from nosgrid.store.db import UnitOfWork

FAUCET_SOURCE: Final = "alloc:community"
FAUCET_CAP_PER_HOUR: Final = 10_000 * BASE_UNITS_PER_NOS


def faucet(uow: UnitOfWork, pubkey: str, amount: int, now: int,
           cap_per_hour: int = FAUCET_CAP_PER_HOUR) -> int:
    """Give a dev key ``amount`` NOS from the community allocation, capped per key per hour."""
    if amount <= 0:
        raise InvalidAmount("ask the faucet for a positive amount")
    granted = uow.conn.execute(
        select(func.coalesce(func.sum(t.faucet_grants.c.amount), 0)).where(
            t.faucet_grants.c.pubkey == pubkey, t.faucet_grants.c.at > now - 3600)
    ).scalar() or 0
    if int(granted) + amount > cap_per_hour:
        left = max(0, cap_per_hour - int(granted))
        raise RateLimited(
            f"the faucet gives at most {format_nos(cap_per_hour)} NOS per key per hour; "
            f"{format_nos(left)} NOS left this hour",
        )
    uow.conn.execute(t.faucet_grants.insert().values(pubkey=pubkey, amount=amount, at=now))
    uow.ledger.append("faucet", pubkey, now, [Posting(FAUCET_SOURCE, wallet(pubkey), amount)])
    return uow.ledger.balance(wallet(pubkey))


def verify_ledger(uow: UnitOfWork) -> VerifyReport:
    """Recompute the hash chain and invariants from the stored journal and balances."""
    return verify(uow.ledger.entries(), uow.ledger.balances())


def budget_standing(uow: UnitOfWork, key: str, now: int,
                    cap: float = 8.0) -> float | None:
    """How many times the base request budget ``key`` gets (``core.budgets``), or None
    for a key the market does not know: no funds, no stake and not a registered node.
    Such keys share the small per-address budget of unsigned requests."""
    funded = uow.ledger.balance(wallet(key)) > 0
    account = uow.economics.stake(key)
    stake = account.market_stake if account else 0
    node = uow.nodes.exists(key)
    if not (funded or stake > 0 or node):
        return None
    reputation = rep_rules.score(uow.economics.reputation(key), now) if node else 0.0
    return standing_multiplier(stake, reputation, cap)
