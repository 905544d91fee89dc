"""Operator alerts: what changed about a node between two looks at it.

The coordinator samples a node's public state (status, offences, since when it waits for
work) and :func:`changes` names what an operator wants to hear about: it went offline or
came back, it was slashed, a model replica it serves failed its health check, it has been
idle for ``idle_after`` seconds.

>>> a = NodeSnapshot(status="online", offences=0, waiting_since=None)
>>> [x.kind for x in changes(a, NodeSnapshot("offline", 0, None), now=10, idle_after=60)]
['offline']
>>> [x.kind for x in changes(a, NodeSnapshot("online", 1, None), now=10, idle_after=60)]
['slashed']
>>> [x.kind for x in changes(a, NodeSnapshot("online", 0, 0.0), now=61, idle_after=60)]
['idle']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AlertKind = Literal["offline", "online", "slashed", "unhealthy", "idle"]


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    status: str
    offences: int
    #: since when the node has waited for work (None: busy, or not polling)
    waiting_since: float | None
    #: the node's gateway replicas whose health check failed
    unhealthy_replicas: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    message: str


def _idle(s: NodeSnapshot, now: float, idle_after: float) -> bool:
    return (s.status == "online" and s.waiting_since is not None
            and now - s.waiting_since >= idle_after)


def changes(before: NodeSnapshot, after: NodeSnapshot, *, now: float,
            idle_after: float, before_at: float = 0.0) -> list[Alert]:
    """Alerts for the move from ``before`` (seen at ``before_at``) to ``after`` (seen at
    ``now``). An idle spell is reported once, when it crosses ``idle_after``."""
    out: list[Alert] = []
    if after.status != "online" and before.status == "online":
        out.append(Alert("offline", f"the node is {after.status}: its heartbeats stopped"))
    if before.status != "online" and after.status == "online":
        out.append(Alert("online", "the node is back online"))
    if after.offences > before.offences:
        out.append(Alert("slashed", f"the node was slashed (offence {after.offences})"))
    if after.unhealthy_replicas > before.unhealthy_replicas:
        out.append(Alert("unhealthy", f"{after.unhealthy_replicas} model replica(s) of the "
                                      "node failed their health check"))
    reported = (_idle(before, before_at, idle_after)
                and before.waiting_since == after.waiting_since)
    if _idle(after, now, idle_after) and not reported:
        since = after.waiting_since if after.waiting_since is not None else now
        minutes = int((now - since) // 60)
        out.append(Alert("idle", f"the node has waited for work for {minutes} min"))
    return out
