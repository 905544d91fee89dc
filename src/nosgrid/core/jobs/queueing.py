"""The queue's order: first come, first served, with a bounded head start.

A node asking for work gets the queued job with the smallest **queue time**: when it was
posted, less a head start of at most ``MAX_HEAD_START_S`` seconds that the job earns by
what its client offers (the share of the full price its deposit covers) and by its
client's record (jobs that ran to the end, against jobs it cancelled). The head start is
fixed when the job is posted, so the order is a plain index scan.

No starvation, by construction: a job posted at ``t`` is ahead of every job posted after
``t + MAX_HEAD_START_S``, whatever they offer, so it waits at most that long behind
newcomers (plus the jobs that were already ahead of it).

>>> head_start(offered=1.0, client_reputation=1.0)
120
>>> head_start(offered=0.0, client_reputation=0.0)
0
>>> queue_at(1_000, head_start(offered=1.0, client_reputation=0.5))
910
"""

from __future__ import annotations

from typing import Final

#: the most a job can jump the queue by, in seconds of age
MAX_HEAD_START_S: Final = 120
#: how much of the head start the offer and the client's record each buy
PRICE_WEIGHT: Final = 0.5
REPUTATION_WEIGHT: Final = 0.5
#: how many of a client's recent jobs its record counts
CLIENT_RECORD_WINDOW: Final = 200


def client_reputation(completed: int, cancelled: int) -> float:
    """A client's record in [0, 1]: jobs that ran to the end against jobs it cancelled,
    with one of each assumed (a new client starts at 0.5, a key that posts and cancels
    as fast as it can falls towards 0).

    >>> client_reputation(0, 0), client_reputation(98, 0) > 0.98, client_reputation(0, 98) < 0.02
    (0.5, True, True)
    """
    return (max(completed, 0) + 1) / (max(completed, 0) + max(cancelled, 0) + 2)


def offered_share(deposit: int, full_price: int) -> float:
    """What the job's deposit covers of price × timeout (below 1 when ``max_price`` caps it)."""
    return 1.0 if full_price <= 0 else min(1.0, max(0.0, deposit / full_price))


def head_start(*, offered: float, client_reputation: float,
               max_head_start: int = MAX_HEAD_START_S) -> int:
    """Seconds a job is put ahead of its posting time, at most ``max_head_start``."""
    score = (PRICE_WEIGHT * min(max(offered, 0.0), 1.0)
             + REPUTATION_WEIGHT * min(max(client_reputation, 0.0), 1.0))
    return round(max_head_start * score)


def queue_at(posted_at: int, head_start_s: int) -> int:
    """The job's place in the queue (smaller is served first; ties by arrival)."""
    return posted_at - max(0, min(head_start_s, MAX_HEAD_START_S))
