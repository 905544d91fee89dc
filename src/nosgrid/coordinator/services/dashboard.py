"""The dashboard's figures: each one a use case the JSON routes and the pages both call.

A page never computes a figure of its own: ``coordinator/dashboard`` renders what these
return, and ``coordinator/api/dashboard`` answers the same values as JSON (the SDK's
``market_stats``, ``node_stats``, ``ledger_entries``... read them).
"""

from __future__ import annotations

from nosgrid.coordinator.services import economics
from nosgrid.core import tokenomics as tk
from nosgrid.core import uptime
from nosgrid.core.dashboard_views import (
    AccountBalance,
    AllocationRow,
    AnchorView,
    DayEarnings,
    EmissionPoint,
    LedgerEntryView,
    LedgerPage,
    MarketStats,
    NodeList,
    NodeQueuePosition,
    NodeStats,
    NodeSummary,
    TokenomicsView,
)
from nosgrid.core.jobs.state import JobState
from nosgrid.core.ledger import REWARDS_POOL, TREASURY, ZERO_HASH, hash_body, wallet
from nosgrid.core.money import format_nos
from nosgrid.core.reputation import WeightedMatcher
from nosgrid.store.dashboard import DashboardReads
from nosgrid.store.db import UnitOfWork

#: how many days of earnings a node's chart shows
EARNING_DAYS = 14
_ENDED = {JobState.COMPLETED.value, JobState.FAILED.value, JobState.TIMED_OUT.value,
          JobState.SETTLED.value, JobState.CANCELLED.value}


def record_uptime(uow: UnitOfWork, node_id: str, now: float) -> None:
    """Credit the time since the node's previous heartbeat to its hourly uptime; before
    its first, since it registered or last polled (``last_heartbeat``, not yet moved)."""
    reads = DashboardReads(uow.conn)
    previous = reads.last_seen(node_id)
    if previous is None:
        previous = float(uow.nodes.get(node_id)["last_heartbeat"])
    gained = uptime.credit(previous, now)
    hours = uptime.split_by_hour(now - gained, now) if gained and previous is not None else []
    reads.credit_uptime(node_id, hours, now)


def market_stats(uow: UnitOfWork, name: str, now: int, nodes_waiting: int) -> MarketStats:
    uow.markets.get(name)  # a clear 404 for an unknown market
    reads = DashboardReads(uow.conn)
    by_state = reads.jobs_by_state(market=name)
    hour, _ = reads.finished_since(name, now - uptime.HOUR)
    day, seconds = reads.finished_since(name, now - uptime.DAY)
    online = reads.nodes_online(name)
    return MarketStats(
        market=name, queue_length=by_state.get(JobState.QUEUED.value, 0),
        running=by_state.get(JobState.RUNNING.value, 0)
        + by_state.get(JobState.ASSIGNED.value, 0),
        nodes_online=online, nodes_waiting=nodes_waiting, finished_1h=hour,
        finished_24h=day, gpu_seconds_24h=seconds, jobs_by_state=by_state)


def node_stats(uow: UnitOfWork, node_id: str, now: int) -> NodeStats:
    node = uow.nodes.get(node_id)
    reads = DashboardReads(uow.conn)
    first_day = uptime.day_of(now) - (EARNING_DAYS - 1) * uptime.DAY
    paid = reads.credits_by_day(wallet(node_id), first_day)
    earnings = [DayEarnings(day=d, earned=paid.get(d, 0), earned_nos=format_nos(paid.get(d, 0)))
                for d in range(first_day, uptime.day_of(now) + 1, uptime.DAY)]
    total = reads.credits_total(wallet(node_id))
    hour_now = now // uptime.HOUR
    registered = int(node["registered_at"])
    up_24h = uptime.uptime_share(seconds=reads.uptime_seconds(node_id, hour_now - 23),
                                 window=uptime.DAY, registered_at=registered, now=now)
    up_7d = uptime.uptime_share(seconds=reads.uptime_seconds(node_id, hour_now - 7 * 24 + 1),
                                window=7 * uptime.DAY, registered_at=registered, now=now)
    by_state = reads.jobs_by_state(node=node_id)
    clean, faults = uow.verification.record(node_id)
    standing = economics.node_standing(uow, node_id, now)
    return NodeStats(
        node_id=node_id, uptime_24h=up_24h, uptime_7d=up_7d, earnings=earnings,
        earned_total=total, earned_total_nos=format_nos(total), jobs_by_state=by_state,
        jobs_run=sum(n for s, n in by_state.items() if s in _ENDED), audits_passed=clean,
        audit_faults=faults, slashes=int(standing["offences"]),
        queue=[queue_position(uow, node_id, m, now) for m in node["markets"]])


def queue_position(uow: UnitOfWork, node_id: str, market_name: str,
                   now: int) -> NodeQueuePosition:
    """The node's rank among the market's idle nodes by the matcher's share of picks."""
    market = uow.markets.get(market_name)
    pool = tuple(economics.candidates(uow, market, now))
    queued = DashboardReads(uow.conn).queued_in(market_name)
    ids = [c.node_id for c in pool]
    if node_id not in ids:
        why = ("busy with a job or not polling" if pool or queued else "not polling")
        return NodeQueuePosition(market=market_name, waiting=len(pool), queued_jobs=queued,
                                 why=f"not waiting for work in this market ({why})")
    shares = [float(p) for p in WeightedMatcher().probabilities(pool)]
    mine = shares[ids.index(node_id)]
    position = 1 + sum(1 for s in shares if s > mine)
    return NodeQueuePosition(market=market_name, position=position, waiting=len(pool),
                             share=round(mine, 4), queued_jobs=queued,
                             why=f"{position} of {len(pool)} idle nodes by reputation × √stake")


def node_list(uow: UnitOfWork, now: int, offset: int = 0, limit: int = 100) -> NodeList:
    rows = []
    nodes = uow.nodes.all()
    standings = economics.node_standings(uow, [n["id"] for n in nodes], now)
    for n in nodes:
        standing = standings[n["id"]]
        rows.append(NodeSummary(id=n["id"], status=n["status"], markets=n["markets"],
                                hardware=n["hardware"], stake=standing["stake"],
                                stake_nos=format_nos(standing["stake"]),
                                reputation=standing["reputation"],
                                jobs_done=standing["jobs_done"],
                                offences=standing["offences"]))
    rows.sort(key=lambda r: (r.status != "online", -r.reputation, r.id))
    end = offset + limit
    return NodeList(nodes=rows[offset:end], online=sum(1 for r in rows if r.status == "online"),
                    total=len(rows), next=end if end < len(rows) else None)


def ledger_page(uow: UnitOfWork, from_seq: int, limit: int, settlement: str) -> LedgerPage:
    """Entries from ``from_seq`` on, each with its hash recomputed and its link checked."""
    entries = uow.ledger.entries(max(0, from_seq - 1) if from_seq else 0, limit + 1)
    before = None
    if from_seq and entries and entries[0].seq == from_seq - 1:
        before, entries = entries[0], entries[1:]
    more = len(entries) > limit
    entries = entries[:limit]
    views = []
    prev = before.hash if before is not None else (ZERO_HASH if from_seq == 0 else None)
    for e in entries:
        views.append(LedgerEntryView(
            seq=e.seq, kind=e.kind, ref=e.ref, at=e.at,
            postings=[p.as_list() for p in e.postings], prev_hash=e.prev_hash,
            meta=dict(e.meta), hash=e.hash, hash_ok=hash_body(e.body()) == e.hash,
            links_ok=prev is None or e.prev_hash == prev))
        prev = e.hash
    head = uow.ledger.head()
    anchors = [AnchorView(**a) for a in DashboardReads(uow.conn).anchors(20)]
    return LedgerPage(entries=views, next=entries[-1].seq + 1 if more else None,
                      head_seq=head[0] if head else None, head_hash=head[1] if head else None,
                      anchors=anchors, settlement=settlement)


def account_balances(uow: UnitOfWork, prefix: str | None, limit: int) -> list[AccountBalance]:
    return [AccountBalance(name=n, balance=b, balance_nos=format_nos(b))
            for n, b in DashboardReads(uow.conn).accounts(prefix, limit)]


def tokenomics(uow: UnitOfWork, epochs: int, params: tk.EconomicParams = tk.DEFAULT_PARAMS,
               ) -> TokenomicsView:
    """The genesis allocation and emission curve (the rules), and what was emitted."""
    allocs = tk.allocations(params)
    rows = []
    for acct, amount in allocs.items():
        v = params.vesting.get(acct)
        rows.append(AllocationRow(
            account=acct, share_bps=params.allocation_bps[acct], amount=amount,
            amount_nos=format_nos(amount),
            cliff_months=round(v.cliff / tk.MONTH, 2) if v else None,
            vesting_months=round(v.duration / tk.MONTH, 2) if v else None))
    schedule = tk.emission_schedule(epochs, params)
    points, cumulative = [], 0
    for k, amount in enumerate(schedule):
        cumulative += amount
        points.append(EmissionPoint(epoch=k, release=amount, cumulative=cumulative,
                                    release_nos=format_nos(amount)))
    last = uow.economics.last_epoch()
    emitted = tk.reserve_amount(params) - tk.reserve_after(last + 1, params)
    total = sum(allocs.values())
    return TokenomicsView(
        total_supply=total, total_supply_nos=format_nos(total), allocation=rows,
        epoch_seconds=params.epoch_seconds, emission_decay_bps=params.emission_decay_bps,
        emission=points, last_epoch=last, emitted=emitted, emitted_nos=format_nos(emitted),
        rewards_pool=uow.ledger.balance(REWARDS_POOL), treasury=uow.ledger.balance(TREASURY))
