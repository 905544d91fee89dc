"""Economic use cases: staking commands, fee distribution, slashing, reputation, matching.

These run inside the caller's unit of work, like the job use cases: ``slash_for`` when
the coordinator observes an offence, ``candidates`` when a job is dispatched, and
:func:`on_job_settled`, the handler of every ``JobSettled`` (registered in
``coordinator/bootstrap.py``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from nosgrid.core import reputation as rep_rules
from nosgrid.core import staking, tokenomics
from nosgrid.core.events import EpochEmitted, Event, JobSettled
from nosgrid.core.jobs.state import Job
from nosgrid.core.ledger import REWARDS_POOL, wallet
from nosgrid.core.markets import MarketParams, NodeCandidate
from nosgrid.core.reputation import NodeReputation
from nosgrid.core.slashing import (
    Evidence,
    Offence,
    OffenceHistory,
    SlashNode,
    may_take_jobs,
)
from nosgrid.core.slashing import slash as slash_rule
from nosgrid.core.staking import StakeAccount
from nosgrid.store.db import UnitOfWork


def stake_command(uow: UnitOfWork, cmd: staking.StakeCommand) -> staking.StakeResult:
    """Apply one staking command: ledger postings, new account and pool, in one entry."""
    res = staking.handle(uow.economics.pool(), uow.economics.stake(cmd.owner), cmd)
    events: tuple[Event, ...] = res.events
    if res.postings:
        kind = "stake." + type(cmd).__name__.lower()
        spend = sum(p.amount for p in res.postings if p.src == wallet(cmd.owner))
        if spend:
            uow.settlement.check_stake(uow, cmd.owner, spend)
        entry = uow.ledger.append(kind, cmd.owner, cmd.now, res.postings,
                                  {"events": [e.name for e in res.events]})
        events = tuple(e.booked(entry) for e in events)
    uow.economics.save_pool(res.pool)
    uow.economics.save_stake(res.account)
    uow.publish(*events)
    return res


def stake_view(uow: UnitOfWork, owner: str, now: int) -> dict[str, Any]:
    acct = uow.economics.stake(owner)
    if acct is None:
        return {"owner": owner, "staked": False}
    pool = uow.economics.pool()
    return {
        "owner": owner, "staked": True, "amount": acct.amount, "days": acct.days,
        "multiplier_bps": acct.multiplier_bps, "score": acct.score,
        "staked_at": acct.staked_at, "unstaked_at": acct.unstaked_at,
        "withdrawable": staking.withdrawable(acct, now),
        "pending_rewards": staking.pending_rewards(pool, acct), "active": acct.active,
    }


def on_job_settled(uow: UnitOfWork, event: JobSettled) -> None:
    """After a settle entry: the stakers' fee into the accumulator, the node's reputation.

    The job counts for its node as the outcome says (delivered, or not); a cancelled,
    withdrawn or rejected run counts neither way (a rejected result is the audit's to
    judge, see ``verification``).
    """
    job, now = event.job, event.at
    if event.stakers_fee:
        fees = staking.distribute_fees(uow.economics.pool(), event.stakers_fee, now)
        uow.economics.save_pool(fees.pool)
        uow.publish(*fees.events)
    succeeded = None if job.outcome is None else job.outcome.node_delivered
    if job.node is None or job.started_at is None or succeeded is None:
        return
    on_time = 1.0
    if job.deadline is not None and job.finished_at is not None:
        on_time = rep_rules.timeliness(job.finished_at, job.deadline, job.timeout)
    rep = rep_rules.record_job(uow.economics.reputation(job.node), now, succeeded=succeeded,
                               on_time=on_time)
    uow.economics.save_reputation(job.node, rep)


def record_heartbeat(uow: UnitOfWork, node: str, now: int, *, received: bool) -> None:
    rep = rep_rules.record_heartbeats(uow.economics.reputation(node), now,
                                      received=1 if received else 0, expected=1)
    uow.economics.save_reputation(node, rep)


def slash_for(uow: UnitOfWork, job: Job | None, offence: Offence, now: int, *,
              journal_hash: str = "", challenger: str | None = None,
              offender: str | None = None, reports: tuple[str, ...] = (),
              records: tuple[str, ...] = ()) -> int:
    """Slash the job's node for ``offence``, with the job (and entry) as evidence; or,
    for an offence without a job (a price reporter's equivocation), ``offender`` with the
    hashes of its two conflicting ``reports`` as evidence.

    Returns the amount slashed (0 when the node has no stake: strikes still count).
    A node whose stake falls under a market's minimum leaves that market (the handler
    of ``NodeSlashed``, ``nodes.on_node_slashed``).
    """
    node = offender or (job.node if job is not None else None)
    if node is None:
        return 0
    job_id = job.id if job is not None else ""
    account = uow.economics.stake(node) or staking.StakeAccount(owner=node)
    history = uow.economics.offences(node)
    evidence = Evidence(journal_hash=journal_hash, job_id=job_id, reports=reports,
                        records=records)
    cmd = SlashNode(node, offence, evidence, now,
                    job_price=job.price_per_second * job.timeout if job is not None else 0,
                    challenger=challenger)
    res = slash_rule(uow.economics.pool(), account, history, cmd)
    events: tuple[Event, ...] = res.events
    if res.postings:
        meta: dict[str, Any] = {"offence": str(offence), "job_id": job_id,
                                "evidence": cmd.evidence.ref}
        if reports:
            meta["reports"] = list(reports)
        if records:
            meta["records"] = list(records)
        entry = uow.ledger.append("slash", node, now, res.postings, meta)
        events = tuple(e.booked(entry) for e in events)
    uow.economics.save_offences(node, res.history)
    if uow.economics.stake(node) is not None or res.amount:
        uow.economics.save_pool(res.pool)
        uow.economics.save_stake(res.account)
    uow.publish(*events)
    return res.amount


def node_standing(uow: UnitOfWork, node: str, now: int) -> dict[str, Any]:
    """Stake, reputation and jail state of a node, for the API."""
    return _standing(uow.economics.stake(node), uow.economics.reputation(node),
                     uow.economics.offences(node), now)


def node_standings(uow: UnitOfWork, nodes: list[str], now: int) -> dict[str, dict[str, Any]]:
    """:func:`node_standing` of many nodes, read in three queries."""
    return {n: _standing(acct, rep, hist, now)
            for n, (acct, rep, hist) in uow.economics.standings(nodes).items()}


def _standing(acct: StakeAccount | None, rep: NodeReputation, hist: OffenceHistory,
              now: int) -> dict[str, Any]:
    return {
        "stake": acct.market_stake if acct else 0,
        "reputation": round(rep_rules.score(rep, now), 4),
        "jobs_done": round(rep.success_ok + rep.success_bad),
        "offences": hist.offences, "jailed_until": hist.jailed_until or None,
    }


def candidates(uow: UnitOfWork, market: MarketParams, now: int) -> list[NodeCandidate]:
    """Idle nodes waiting in ``market`` that may take its jobs (stake, not jailed)."""
    out = []
    for n in uow.nodes.waiting(market.name):
        acct = uow.economics.stake(n["id"])
        if not may_take_jobs(acct, uow.economics.offences(n["id"]), market, now):
            continue
        rep = uow.economics.reputation(n["id"])
        out.append(NodeCandidate(
            node_id=n["id"], waiting_since=float(n["waiting_since"]),
            stake=acct.market_stake if acct else 0,
            reputation=rep_rules.score(rep, now),
            jobs_done=round(rep.success_ok + rep.success_bad)))
    return sorted(out, key=lambda c: c.node_id)


def dispatch_seed(job_id: str, head_hash: str) -> int:
    """A reproducible seed for the matcher: anyone can recompute the choice."""
    return int.from_bytes(hashlib.sha256(f"{head_hash}:{job_id}".encode()).digest()[:8], "big")


def run_emissions(uow: UnitOfWork, now: int,
                  params: tokenomics.EconomicParams = tokenomics.DEFAULT_PARAMS) -> list[int]:
    """Apply every finished emission epoch exactly once (the journal ref is the epoch).

    Each epoch releases its share of the reserve into ``rewards_pool`` and pays nodes pro
    rata to the compute-seconds of the jobs they completed in it. Until audits mark jobs
    verified (verification), every delivered job's seconds count (outcome ``completed``;
    a result a dispute rejected does not count).
    """
    genesis = uow.ledger.entries(0, limit=1)
    if not genesis:
        return []
    genesis_at = genesis[0].at
    current = tokenomics.epoch_at(now, genesis_at, params)
    marker = uow.economics.last_epoch()
    applied = []
    for epoch in range(marker + 1, current):
        start = genesis_at + epoch * params.epoch_seconds
        work = uow.jobs.compute_seconds(start, start + params.epoch_seconds)
        emission = tokenomics.epoch_emission(epoch, work, params,
                                             uow.ledger.balance(REWARDS_POOL))
        if emission.postings:
            entry = uow.ledger.append("emission", f"epoch:{epoch}", now, emission.postings,
                                      {"released": emission.released,
                                       "nodes": len(emission.paid)})
            uow.publish(EpochEmitted(at=now, entry=entry, epoch=epoch,
                                     released=emission.released, nodes=len(emission.paid)))
        applied.append(epoch)
    if applied:
        uow.economics.set_last_epoch(applied[-1])
    return applied
