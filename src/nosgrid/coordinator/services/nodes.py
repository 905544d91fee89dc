"""Node use cases: register with a hardware report, heartbeat, take work, go offline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nosgrid.coordinator.services import economics
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.core.jobs.state import Job, JobState
from nosgrid.core.markets import HardwareReport, eligibility
from nosgrid.store.db import UnitOfWork


@dataclass(frozen=True)
class Registration:
    node_id: str
    markets: list[str]
    rejected: dict[str, list[str]] = field(default_factory=dict)


def register(uow: UnitOfWork, node_id: str, hardware: HardwareReport, wanted: Sequence[str],
             now: float, stake: int = 0) -> Registration:
    """The coordinator, not the node, decides which markets it joins (from the report)."""
    markets = {m.name: m for m in uow.markets.all()}
    wanted = list(wanted) or sorted(markets)
    accepted, rejected = [], {}
    for name in wanted:
        market = markets.get(name)
        if market is None:
            rejected[name] = ["no such market"]
            continue
        verdict = eligibility(market, hardware, stake)
        if verdict.ok:
            accepted.append(name)
        else:
            rejected[name] = list(verdict.reasons)
    uow.nodes.upsert(node_id, hardware, accepted, now)
    return Registration(node_id, accepted, rejected)


def heartbeat(uow: UnitOfWork, node_id: str, now: float) -> None:
    uow.nodes.get(node_id)
    uow.nodes.set(node_id, last_heartbeat=now, status="online")
    economics.record_heartbeat(uow, node_id, int(now), received=True)


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
