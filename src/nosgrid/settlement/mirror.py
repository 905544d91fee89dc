"""How the ledger mirrors the chain in ``solana`` mode (see docs/settlement.md).

The chain holds the tokens; the ledger tracks what the market may move and what it owes:

==================  ===========================================================
ledger account      on chain
==================  ===========================================================
``wallet:<pk>``     the part of ``pk``'s approved allowance not reserved by a job
``escrow:<job>``    a reservation: still in the client's token account
``replicas:<job>``  the same, for the job's redundant runs
``gwhold:<kid>:<w>`` the same, for the gateway requests of a key of the client (held by
                    gateway worker ``w``)
``treasury``        the treasury token account (+ payouts not yet confirmed)
``stakers_pool``    the rewards vault (+ payouts not yet confirmed)
``stake:<pk>``      ``pk``'s part of the stake vault (+ moves not yet confirmed)
``audit_pool``      the audit vault (+ fees and audit pay not yet confirmed), with the
                    escrows of the audit runs it funds
``alloc:reserve``,  the emissions vault (+ rewards not yet confirmed); opened with the
``rewards_pool``    reserve the ledger holds
``onchain``         NOS on chain outside the market's reach (opened once from
                    ``alloc:community``; allowances come from it, payouts return to it)
==================  ===========================================================

So ``allowance(pk) == wallet:<pk> + open escrows of pk + unconfirmed payouts and stake
deposits from pk``, and the stake vault holds ``Σ stake:*`` (after pending moves), which
``reconcile`` checks. The ledger's own invariants (supply, non-negativity, hash
chain) are untouched: every movement is still a posting between two ledger accounts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import func, select, true

from nosgrid.core.errors import InvalidInput
from nosgrid.core.jobs.state import Job, JobState
from nosgrid.core.ledger import (
    GATEWAY_AUDIT_PREFIX,
    GATEWAY_HOLD_PREFIX,
    REWARDS_POOL,
    STAKERS_POOL,
    TREASURY,
    JournalEntry,
    Posting,
    escrow,
    replica_reserve,
    stake_vault,
    wallet,
)
from nosgrid.core.money import format_nos
from nosgrid.core.verification import AUDIT_POOL
from nosgrid.settlement.errors import AllowanceTooSmall
from nosgrid.store import tables as t
from nosgrid.store.db import UnitOfWork
from nosgrid.store.outbox import OutboxKind, OutboxLeg, OutboxRepo

ONCHAIN: Final = "onchain"
FLOAT_SOURCE: Final = "alloc:community"
OPENED: Final = "settlement.opened"
ALLOWANCE: Final = "settlement.allowance"
RELEASED: Final = "settlement.released"


def opening(uow: UnitOfWork) -> dict[str, Any] | None:
    """The ``settlement.opened`` entry's meta (mint, vaults, baseline balances), if any."""
    raw = uow.conn.execute(select(t.journal.c.meta).where(t.journal.c.kind == OPENED)
                           .order_by(t.journal.c.seq).limit(1)).scalar()
    return None if raw is None else dict(json.loads(raw))


def open_mirror(uow: UnitOfWork, accounts: Mapping[str, str], baseline: Mapping[str, int],
                now: int) -> dict[str, Any]:
    """Start mirroring the chain: move the community allocation into ``onchain`` once.

    ``accounts`` are the market's addresses (mint, authority, treasury, vaults) and
    ``baseline`` the balances its token accounts held at opening. Refuses a ledger that
    already mirrors another mint.
    """
    found = opening(uow)
    if found is not None:
        if found.get("mint") != accounts["mint"]:
            raise InvalidInput(
                f"this ledger mirrors NOS mint {found.get('mint')}, not {accounts['mint']}; "
                "use the market's own mint, or a fresh database for a new chain")
        return found
    meta = {**accounts, "baseline": dict(baseline)}
    amount = uow.ledger.balance(FLOAT_SOURCE)
    postings = [Posting(FLOAT_SOURCE, ONCHAIN, amount)] if amount else []
    uow.ledger.append(OPENED, "solana", now, postings, meta)
    return meta


def open_pool_run_escrows(uow: UnitOfWork) -> int:
    """NOS in the escrows of open pool-funded runs (still the audit vault's on chain)."""
    return sum(uow.ledger.balance(escrow(j)) for j in uow.verification.open_pool_run_ids())


def open_escrows(uow: UnitOfWork, client: str) -> int:
    """NOS reserved by ``client``'s jobs that have not settled (escrows and the deposits
    reserved for their redundant runs; not the pool-funded audits of them)."""
    ids = [r.id for r in uow.conn.execute(select(t.jobs.c.id).where(
        t.jobs.c.client == client, t.jobs.c.state != JobState.SETTLED.value))]
    if ids:  # the escrow of a run the audit pool funds is vault money
        runs = uow.verification.pool_funded_runs(ids)
        ids = [i for i in ids if i not in runs]
    if not ids:
        return 0
    total = uow.conn.execute(select(t.accounts.c.balance).where(
        t.accounts.c.name.in_([a for i in ids for a in (escrow(i), replica_reserve(i))])))
    return sum(int(b) for (b,) in total)


def gateway_holds(uow: UnitOfWork, owner: str) -> int:
    """NOS held for the gateway requests of ``owner``'s API keys (``gwhold:<kid>:<worker>``).

    Each hold is looked up by its exact name, key × gateway worker: only a worker with a
    lease holds money (a reaped or stopped worker's holds are released in the transaction
    that drops its lease), and exact names use the accounts' primary key, where a
    ``LIKE 'gwhold:<kid>:%'`` would scan them and read a ``_`` in a key id as a wildcard.
    """
    keys, accounts, workers = t.gateway_keys, t.accounts, t.gateway_workers
    total = uow.conn.execute(
        select(func.coalesce(func.sum(accounts.c.balance), 0)).select_from(keys)
        .join(workers, true())
        .join(accounts, accounts.c.name == GATEWAY_HOLD_PREFIX + keys.c.kid + ":"
              + workers.c.worker)
        .where(keys.c.owner == owner))
    return int(total.scalar() or 0)


def gateway_audit_holds(uow: UnitOfWork, owner: str) -> int:
    """NOS of ``owner``'s served gateway requests held for their audit window
    (``gwaudit:<owner>:<node>``): still in the owner's token account until paid out."""
    prefix = GATEWAY_AUDIT_PREFIX + owner + ":"  # base58 has no LIKE wildcards
    total = uow.conn.execute(select(func.coalesce(func.sum(t.accounts.c.balance), 0))
                             .where(t.accounts.c.name.like(prefix + "%")))
    return int(total.scalar() or 0)


def reserved_for(uow: UnitOfWork, client: str) -> int:
    """What the market already counts on from ``client``'s allowance besides the wallet."""
    return (open_escrows(uow, client) + gateway_holds(uow, client)
            + gateway_audit_holds(uow, client) + OutboxRepo(uow.conn).unconfirmed_for(client))


def sync_allowance(uow: UnitOfWork, client: str, allowance: int, now: int) -> int:
    """Make ``wallet:<client>`` the unreserved part of the on-chain ``allowance``; returns it.

    Appends one ``settlement.allowance`` entry (``onchain ⇄ wallet``) when they differ.
    """
    target = max(0, allowance - reserved_for(uow, client))
    have = uow.ledger.balance(wallet(client))
    meta = {"allowance": allowance}
    if target > have:
        uow.ledger.append(ALLOWANCE, client, now,
                          [Posting(ONCHAIN, wallet(client), target - have)], meta)
    elif target < have:
        uow.ledger.append(ALLOWANCE, client, now,
                          [Posting(wallet(client), ONCHAIN, have - target)], meta)
    return target


def check_allowance(uow: UnitOfWork, client: str, deposit: int) -> None:
    """Refuse a job whose deposit the client's (mirrored) allowance does not cover."""
    have = uow.ledger.balance(wallet(client))
    if have < deposit:
        raise AllowanceTooSmall(
            f"posting needs a deposit of {format_nos(deposit)} NOS but only "
            f"{format_nos(have)} NOS of your approved allowance is free; run "
            f"`nosgrid wallet approve {format_nos(deposit - have + reserved_for(uow, client))}` "
            "(or more) and retry", allowance=have, needed=deposit)


def _queue(uow: UnitOfWork, entry: JournalEntry, kind: OutboxKind, legs: list[OutboxLeg], *,
           at: float, source: str, job_id: str | None) -> list[Posting]:
    """Add one outbox row paying ``legs`` for ``entry``; return the ``wallet → onchain``
    moves it implies (what reaches a wallet is then in that key's own token account)."""
    OutboxRepo(uow.conn).add(kind=kind, entry_hash=entry.hash, legs=legs, at=at,
                             source=source, job_id=job_id)
    return [Posting(leg.account, ONCHAIN, leg.amount) for leg in legs
            if leg.account.startswith("wallet:")]


def _release(uow: UnitOfWork, entry: JournalEntry, ref: str, moves: list[Posting]) -> None:
    """Record ``moves`` (from :func:`_queue`) as one ``settlement.released`` entry."""
    if moves:
        uow.ledger.append(RELEASED, ref, entry.at, moves, {"entry": entry.hash})


def enqueue_payout(uow: UnitOfWork, job: Job, entry: JournalEntry, *, treasury: str,
                   rewards_vault: str, at: float, audit_vault: str = "") -> list[OutboxLeg]:
    """After a ``job.settled`` entry: queue its on-chain legs (same transaction).

    The node's pay leaves the market's reach once paid, so it moves ``wallet:<node> →
    onchain`` in a ``settlement.released`` entry; a refund stays in the client's wallet
    (the allowance was never used), and needs no transaction. The audit fee goes to the
    audit vault (when the market has one).
    """
    destinations = {TREASURY: treasury, STAKERS_POOL: rewards_vault}
    if audit_vault:
        destinations[AUDIT_POOL] = audit_vault
    if job.node is not None and job.node != job.client:
        destinations[wallet(job.node)] = job.node
    legs = [OutboxLeg(destinations[p.dst], p.amount, p.dst) for p in entry.postings
            if p.src == escrow(job.id) and p.dst in destinations]
    if legs:
        _release(uow, entry, job.id, _queue(uow, entry, OutboxKind.PAYOUT, legs, at=at,
                                           source=job.client, job_id=job.id))
    return legs


def enqueue_usage_payout(uow: UnitOfWork, entry: JournalEntry, owner: str, *, treasury: str,
                         at: float, label: str = "") -> list[OutboxLeg]:
    """After a ``gateway.usage`` entry for ``owner``'s keys (or a ``job.posted`` entry
    with a posting fee, ``label`` naming it): queue its payout (same transaction), one
    transaction from ``owner``'s token account with the authority as delegate, like a
    job's: the serving nodes' shares and the treasury fee.

    As with a job, what reaches a node's wallet moves ``wallet → onchain``.
    """
    legs = []
    for p in entry.postings:
        if p.dst == TREASURY:
            legs.append(OutboxLeg(treasury, p.amount, p.dst))
        elif p.dst.startswith("wallet:") and p.dst != wallet(owner):
            legs.append(OutboxLeg(p.dst.removeprefix("wallet:"), p.amount, p.dst))
    if legs:
        _release(uow, entry, entry.ref, _queue(uow, entry, OutboxKind.PAYOUT, legs, at=at,
                                              source=owner,
                                              job_id=label or f"gateway-usage-{entry.seq}"))
    return legs


#: the protocol pools whose payouts to keys leave a vault, and the outbox kind of each
POOL_PAYOUTS: Final = {AUDIT_POOL: OutboxKind.AUDIT_PAY, REWARDS_POOL: OutboxKind.EMISSION}


def enqueue_pool_payouts(uow: UnitOfWork, entry: JournalEntry, *, pools: Sequence[str],
                         at: float) -> list[OutboxLeg]:
    """After an entry that pays keys out of one of ``pools`` (``audit.paid`` or a disputed
    job's settle entry from ``audit_pool``; an ``emission`` entry from ``rewards_pool``):
    queue one transfer per pool from its vault (same transaction).

    Like a node's pay, what reaches a wallet is then in that key's own token account, so it
    moves ``wallet → onchain`` in a ``settlement.released`` entry.
    """
    out: list[OutboxLeg] = []
    moves: list[Posting] = []
    for pool in pools:
        legs = [OutboxLeg(p.dst.removeprefix("wallet:"), p.amount, p.dst)
                for p in entry.postings
                if p.src == pool and p.dst.startswith("wallet:") and p.amount > 0]
        if legs:
            moves += _queue(uow, entry, POOL_PAYOUTS[pool], legs, at=at, source=entry.ref,
                            job_id=entry.ref if pool == AUDIT_POOL else None)
            out += legs
    _release(uow, entry, entry.ref, moves)
    return out


STAKE_PREFIX: Final = stake_vault("")


def enqueue_stake_moves(uow: UnitOfWork, entry: JournalEntry, *, stake_vault_account: str,
                        treasury: str, at: float) -> list[OutboxKind]:
    """After a ``stake.*`` or ``slash`` entry: queue its on-chain moves (same transaction).

    ``wallet:<k> → stake:<k>`` is a deposit from ``k``'s allowance into the stake vault;
    ``stake:<k> → …`` leaves the stake vault (a withdrawal, or a slash to the treasury and
    the challenger); ``stakers_pool → wallet:<k>`` leaves the rewards vault (a claim).
    What reaches a wallet is then in that key's own token account, outside the market, so
    it moves ``wallet → onchain`` in a ``settlement.released`` entry, like a node's pay.
    Returns the kinds queued (none for postings with no on-chain side).
    """
    moves: dict[OutboxKind, tuple[str, list[OutboxLeg]]] = {}
    # a withdrawal returns a stake to its own key; anything else out of a stake is a slash
    slash = any(p.src.startswith(STAKE_PREFIX) and p.dst != wallet(p.src[len(STAKE_PREFIX):])
                for p in entry.postings)
    for p in entry.postings:
        if p.dst.startswith(STAKE_PREFIX) and p.src == wallet(p.dst[len(STAKE_PREFIX):]):
            owner, kind = p.src.removeprefix("wallet:"), OutboxKind.STAKE_DEPOSIT
            leg = OutboxLeg(stake_vault_account, p.amount, p.dst)
        elif p.src.startswith(STAKE_PREFIX) and (p.dst == TREASURY or p.dst.startswith("wallet:")):
            owner = p.src[len(STAKE_PREFIX):]
            kind = OutboxKind.SLASH if slash else OutboxKind.STAKE_WITHDRAW
            dest = treasury if p.dst == TREASURY else p.dst.removeprefix("wallet:")
            leg = OutboxLeg(dest, p.amount, p.dst)
        elif p.src == STAKERS_POOL and p.dst.startswith("wallet:"):
            owner, kind = p.dst.removeprefix("wallet:"), OutboxKind.REWARDS_CLAIM
            leg = OutboxLeg(p.dst.removeprefix("wallet:"), p.amount, p.dst)
        else:
            continue
        moves.setdefault(kind, (owner, []))[1].append(leg)
    job_id = str(entry.meta.get("job_id", "")) if slash else None
    released: list[Posting] = []
    for kind, (owner, legs) in moves.items():
        released += _queue(uow, entry, kind, legs, at=at, source=owner, job_id=job_id or None)
    _release(uow, entry, entry.ref, released)
    return list(moves)


def check_stake(uow: UnitOfWork, owner: str, amount: int) -> None:
    """Refuse a stake or top-up that ``owner``'s (mirrored) allowance does not cover."""
    have = uow.ledger.balance(wallet(owner))
    if have < amount:
        raise AllowanceTooSmall(
            f"staking {format_nos(amount)} NOS needs that much of your approved allowance, "
            f"but only {format_nos(have)} NOS of it is free; run `nosgrid wallet approve "
            f"{format_nos(amount - have + reserved_for(uow, owner))}` (or more) and retry",
            allowance=have, needed=amount)
