"""Node use cases: register with a hardware report, heartbeat, take work, go offline.

Which markets a node serves is recomputed, by :func:`refresh_markets`, from what it
registered (its hardware report and its operator's pins), its stake and the markets that
exist: at registration, on each heartbeat, and (handlers registered in
``coordinator/bootstrap.py``) when a market is created or the node's stake moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nosgrid.coordinator.services import dashboard, economics
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.core.errors import BadSignature, InvalidInput, NodeNotFound, RateLimited
from nosgrid.core.events import MarketCreated, NodeMarketsChanged, NodeSlashed, StakeEvent
from nosgrid.core.jobs.state import Job, JobState
from nosgrid.core.markets import (
    HardwareReport,
    MarketParams,
    ServedMarkets,
    choose_markets,
    node_operator_message,
)
from nosgrid.core.pricing import signature_valid
from nosgrid.store.db import UnitOfWork


@dataclass(frozen=True)
class Registration:
    node_id: str
    markets: list[str]
    rejected: dict[str, list[str]] = field(default_factory=dict)


def register(uow: UnitOfWork, node_id: str, hardware: HardwareReport, wanted: Sequence[str],
             now: float, *, operator: str | None = None, consent: str | None = None,
             max_per_operator: int = 64) -> Registration:
    """The coordinator, not the node, decides which markets it joins (from the report).

    ``wanted``: the markets the operator pinned; empty means any market the node
    qualifies for, now or later. ``operator``: the key that vouches for the node, with
    ``consent``, its signature of ``node_operator_message(node_id)``; one operator may
    hold at most ``max_per_operator`` nodes (a node with none is its own operator).
    """
    if (operator is None) != (consent is None):
        raise InvalidInput("send `operator` and `operator_consent` together")
    if operator is not None and consent is not None:
        if not signature_valid(operator, consent, node_operator_message(node_id)):
            raise BadSignature(f"`operator_consent` is not {operator}'s signature of "
                               f"'{node_operator_message(node_id).decode()}' (SDK: "
                               "operator_consent)")
        held = [n for n in uow.nodes.of_operator(operator) if n != node_id]
        if len(held) >= max_per_operator:
            raise RateLimited(f"operator {operator} has {len(held)} nodes registered, the "
                              "most one operator may hold", cap=max_per_operator)
    uow.nodes.upsert(node_id, hardware, list(dict.fromkeys(wanted)) or None, now)
    if operator is not None:
        uow.nodes.set(node_id, operator=operator)
    choice = refresh_markets(uow, node_id, int(now))
    return Registration(node_id, list(choice.markets),
                        {name: list(why) for name, why in choice.rejected.items()})


def refresh_markets(uow: UnitOfWork, node_id: str, now: int,
                    markets: Sequence[MarketParams] | None = None) -> ServedMarkets:
    """Recompute the markets ``node_id`` serves from its hardware report, its stake and its
    operator's pins; record them and publish ``NodeMarketsChanged`` if they changed."""
    node = uow.nodes.get(node_id)
    account = uow.economics.stake(node_id)
    choice = choose_markets(uow.markets.all() if markets is None else markets,
                            node["hardware"], account.market_stake if account else 0,
                            node["pinned_markets"])
    before = list(node["markets"])
    if list(choice.markets) != before:
        uow.nodes.set_markets(node_id, choice.markets)
        uow.publish(NodeMarketsChanged(
            at=now, node=node_id, markets=choice.markets,
            joined=tuple(m for m in choice.markets if m not in before),
            left=tuple(m for m in before if m not in choice.markets)))
    return choice


def on_market_created(uow: UnitOfWork, event: MarketCreated) -> None:
    """Every registered node that qualifies for the new market (and pinned no others) joins."""
    markets = uow.markets.all()
    for node_id in uow.nodes.ids():
        refresh_markets(uow, node_id, event.at, markets)


def on_stake_moved(uow: UnitOfWork, event: StakeEvent) -> None:
    """A node's stake rose above a market's minimum (it joins) or fell under it (it leaves)."""
    _refresh_if_registered(uow, event.owner, event.at)


def on_node_slashed(uow: UnitOfWork, event: NodeSlashed) -> None:
    _refresh_if_registered(uow, event.node, event.at)


def _refresh_if_registered(uow: UnitOfWork, node_id: str, now: int) -> None:
    try:
        refresh_markets(uow, node_id, now)
    except NodeNotFound:  # a staker that runs no node
        return


def heartbeat(uow: UnitOfWork, node_id: str, now: float) -> list[str]:
    """The node is alive; returns the markets it serves (re-evaluated: a safety net for
    changes no event announced)."""
    choice = refresh_markets(uow, node_id, int(now))
    dashboard.record_uptime(uow, node_id, now)  # before last_heartbeat moves: its baseline
    uow.nodes.set(node_id, last_heartbeat=now, status="online")
    economics.record_heartbeat(uow, node_id, int(now), received=True)
    return list(choice.markets)


def take_work(uow: UnitOfWork, node_id: str, now: float) -> Job | None:
    """Assign the oldest queued job this node may run, or mark the node as waiting."""
    node = uow.nodes.get(node_id)
    busy = uow.jobs.in_states([JobState.ASSIGNED, JobState.RUNNING], node=node_id, limit=1)
    if busy:
        return busy[0]  # it already has a job: hand the same one back (idempotent poll)
    uow.nodes.set(node_id, last_heartbeat=now, status="online")
    job = job_services.assign_next(uow, node_id, node["markets"], int(now))
    if job is None and node["waiting_since"] is None:
        uow.nodes.set(node_id, waiting_since=now)
    return job


def mark_offline(uow: UnitOfWork, now: float, timeout_s: float, max_attempts: int) -> list[Job]:
    """Nodes that missed heartbeats go offline; their open jobs are requeued or refunded."""
    touched: list[Job] = []
    for node_id in uow.nodes.stale(now - timeout_s):
        uow.nodes.set(node_id, status="offline", waiting_since=None)
        economics.record_heartbeat(uow, node_id, int(now), received=False)
        for job in uow.jobs.in_states([JobState.ASSIGNED, JobState.RUNNING], node=node_id):
            touched.append(job_services.requeue_or_refund(
                uow, job, int(now), f"node {node_id} stopped sending heartbeats", max_attempts))
    return touched
