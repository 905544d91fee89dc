"""Uptime: how many seconds a heartbeat credits, and the share of a window a node was up.

A node's heartbeat credits the gap since its previous one, when that gap is no longer than
``MAX_CREDITED_GAP_S`` (a longer silence is downtime: the coordinator marks such a node
offline). Credits are kept per hour so that any window of whole hours can be summed.

>>> credit(previous=100.0, now=110.0)
10.0
>>> credit(previous=100.0, now=200.0)
0.0
>>> uptime_share(seconds=43_200, window=86_400, registered_at=0, now=86_400)
0.5
"""

from __future__ import annotations

from typing import Final

HOUR: Final = 3_600
DAY: Final = 86_400
#: the longest gap between two heartbeats still counted as up (the default heartbeat
#: timeout of a coordinator: a node silent longer is marked offline)
MAX_CREDITED_GAP_S: Final = 30.0


def credit(previous: float | None, now: float, max_gap: float = MAX_CREDITED_GAP_S) -> float:
    """Seconds of uptime the heartbeat at ``now`` credits after one at ``previous``."""
    if previous is None:
        return 0.0
    gap = now - previous
    return gap if 0 < gap <= max_gap else 0.0


def split_by_hour(start: float, end: float) -> list[tuple[int, float]]:
    """``[start, end)`` cut at hour boundaries: ``(hour, seconds)`` pairs, oldest first."""
    out: list[tuple[int, float]] = []
    at = start
    while at < end:
        hour = int(at // HOUR)
        stop = min(end, (hour + 1) * HOUR)
        out.append((hour, stop - at))
        at = stop
    return out


def uptime_share(*, seconds: float, window: int, registered_at: int, now: int) -> float:
    """The share in [0, 1] of the last ``window`` seconds (or of the time since the node
    registered, when that is shorter) that it was seen up."""
    span = min(window, max(0, now - registered_at))
    if span <= 0:
        return 0.0
    return round(min(1.0, seconds / span), 4)


def day_of(at: int) -> int:
    """The unix time of the UTC midnight that starts ``at``'s day."""
    return at - at % DAY
