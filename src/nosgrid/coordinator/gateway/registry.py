"""Which replicas serve which model, their health and load; picking one for a request.

A replica is one exposed port of a running service job, as its node reported it. The pick
is the healthy replica with the fewest outstanding requests, the node's reputation
breaking ties (then the job id, so the choice is deterministic).

>>> reg = Registry()
>>> reg.upsert(Replica("j1", "llm", "n1", "m", "http://127.0.0.1:1", reputation=0.5))
>>> reg.upsert(Replica("j2", "llm", "n2", "m", "http://127.0.0.1:2", reputation=0.9))
>>> reg.pick("m").job_id
'j2'
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Replica:
    job_id: str
    op_id: str
    node: str
    model: str
    endpoint: str
    healthy: bool = True
    reputation: float = 0.0
    outstanding: int = 0
    last_used: float = 0.0  # this worker's last request to it (monotonic)
    #: the last request any worker sent it, as the table says (monotonic, for idle stops)
    last_used_by_any: float = 0.0
    #: the ``updated_at`` of the node's last report (a newer row replaces what we know)
    reported_at: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.job_id, self.op_id)


@dataclass
class Registry:
    replicas: dict[tuple[str, str], Replica] = field(default_factory=dict)
    #: set when a healthy replica of the model appears (cold starts wait on it)
    ready: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))

    def upsert(self, replica: Replica) -> None:
        old = self.replicas.get(replica.key)
        if old is not None:
            old.endpoint, old.healthy, old.model = replica.endpoint, replica.healthy, replica.model
            old.node, old.reported_at = replica.node, replica.reported_at
        else:
            self.replicas[replica.key] = replica
        if replica.healthy:
            self.ready[replica.model].set()

    def drop_jobs(self, job_ids: Iterable[str]) -> list[Replica]:
        gone = set(job_ids)
        dropped = [r for k, r in self.replicas.items() if k[0] in gone]
        for r in dropped:
            del self.replicas[r.key]
        return dropped

    def for_model(self, model: str) -> list[Replica]:
        return [r for r in self.replicas.values() if r.model == model]

    def models(self) -> list[str]:
        return sorted({r.model for r in self.replicas.values()})

    def pick(self, model: str, exclude: Iterable[tuple[str, str]] = ()) -> Replica | None:
        skip = set(exclude)
        live = [r for r in self.replicas.values()
                if r.model == model and r.healthy and r.key not in skip]
        if not live:
            return None
        return min(live, key=lambda r: (r.outstanding, -r.reputation, r.job_id, r.op_id))

    def mark_unhealthy(self, replica: Replica) -> None:
        replica.healthy = False
        if not any(r.healthy for r in self.for_model(replica.model)):
            self.ready[replica.model].clear()


__all__ = ["Registry", "Replica"]
