"""Request budgets: token buckets per key and route class, and what a key's standing buys.

An open market answers anyone, so every request must cost the sender before it costs the
server. The coordinator checks, cheapest first: the body's size, the headers' format, the
**bucket** (this module: a few arithmetic operations on a dict entry), then the signature,
then the database. A request over its budget gets 429 with ``Retry-After``.

Requests are sorted into **route classes** (:func:`route_class`), each with its own rate
and burst (:class:`BudgetParams`). A key the coordinator knows (funded, staked or a
registered node) draws on its own buckets, scaled up by its stake and reputation
(:func:`standing_multiplier`); unsigned requests and keys it does not know share one small
budget per client IP, so a thousand fresh keys cost an attacker the same as one.

>>> b = TokenBucket.full(capacity=2.0, now=0.0)
>>> b, wait = b.take(rate=1.0, capacity=2.0, now=0.0); wait
0.0
>>> b, wait = b.take(rate=1.0, capacity=2.0, now=0.0); wait
0.0
>>> b, wait = b.take(rate=1.0, capacity=2.0, now=0.0); wait  # empty: a token in 1 s
1.0
>>> route_class("POST", "/v1/jobs"), route_class("POST", "/v1/nodes/poll")
('post', 'poll')
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final, Literal

from nosgrid.core.money import BASE_UNITS_PER_NOS

RouteClass = Literal["post", "poll", "read", "report", "blob", "gateway", "stream", "write",
                     "service"]
ROUTE_CLASSES: Final[tuple[RouteClass, ...]] = ("post", "poll", "read", "report", "blob",
                                                 "gateway", "stream", "write", "service")

#: what a node reports about the job it runs
_REPORT = re.compile(r"^/v1/jobs/[^/]+/(start|finish|fail|logs|service)$")
#: a base58 ed25519 public key: 32 bytes are 32–44 characters of the alphabet
PUBKEY_FORMAT: Final = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


def route_class(method: str, path: str, *, streaming: bool = False) -> RouteClass | None:
    """The budget a request draws on; None for the routes no budget guards (health,
    metrics: a monitor must always get through, and they touch no state)."""
    if path in ("/healthz", "/metrics"):
        return None
    if path.startswith("/openai/"):
        return "gateway"
    if path.startswith("/d/"):  # a deployment's stable URL: its users, often unsigned
        return "service"
    if path.startswith("/v1/blobs/"):
        return "blob"
    if streaming:
        return "stream"
    if path in ("/v1/nodes/poll",):
        return "poll"
    if path in ("/v1/nodes/heartbeat",) or (method == "POST" and _REPORT.match(path)):
        return "report"
    if method == "POST" and path in ("/v1/jobs", "/v1/jobs/batch"):
        return "post"
    if method in ("GET", "HEAD"):
        return "read"
    return "write"


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` tokens flow in, up to ``burst``; one request takes one token."""

    per_second: float
    burst: float


def _default_rates() -> dict[RouteClass, Rate]:
    return {
        "post": Rate(20.0, 100.0),
        "poll": Rate(10.0, 40.0),
        "read": Rate(100.0, 400.0),
        "report": Rate(50.0, 200.0),
        "blob": Rate(10.0, 40.0),
        "gateway": Rate(50.0, 200.0),
        "stream": Rate(2.0, 10.0),
        "write": Rate(20.0, 100.0),
        "service": Rate(200.0, 400.0),
    }


@dataclass(frozen=True, slots=True)
class BudgetParams:
    """The budgets of one coordinator (a known key's, before its standing multiplier).

    ``anonymous``: what unsigned requests and unknown keys of one client IP share, per
    class. ``max_open_streams``: followed logs and event streams one key (or one IP, for
    the anonymous) may hold open at once.
    """

    enabled: bool = True
    keyed: dict[RouteClass, Rate] = field(default_factory=_default_rates)
    anonymous: Rate = Rate(20.0, 60.0)
    #: what unsigned users of one address may send to deployments' stable URLs
    anonymous_service: Rate = Rate(200.0, 400.0)
    max_open_streams: int = 8
    #: the most a key's standing multiplies its budget by
    max_multiplier: float = 8.0
    #: how many keys and IPs the coordinator keeps buckets for (the least recently seen go)
    max_tracked: int = 50_000


DEFAULT_BUDGETS: Final = BudgetParams()
#: a budget that never refuses (tests of other rules, the benchmarks' baselines)
UNLIMITED: Final = BudgetParams(enabled=False)

#: a stake of this many base units doubles a key's budget (and each doubling of it, +1×)
STAKE_UNIT: Final = 1_000 * BASE_UNITS_PER_NOS


def standing_multiplier(stake: int, reputation: float, cap: float = 8.0) -> float:
    """How many times its base budget a key gets: 1 for a plain funded key, growing with
    the log of its stake and linearly with its reputation (0..1), at most ``cap``.

    Logarithmic in stake so that buying budget gets dearer the more of it one buys.

    >>> standing_multiplier(0, 0.0), standing_multiplier(STAKE_UNIT, 0.0)
    (1.0, 2.0)
    >>> standing_multiplier(10**18, 1.0)
    8.0
    """
    stake_part = math.log2(1 + max(stake, 0) / STAKE_UNIT)
    rep_part = 2.0 * min(max(reputation, 0.0), 1.0)
    return min(cap, 1.0 + stake_part + rep_part)


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """A bucket's level at ``at``; pure: :meth:`take` returns the new bucket."""

    tokens: float
    at: float

    @classmethod
    def full(cls, capacity: float, now: float) -> TokenBucket:
        return cls(capacity, now)

    def take(self, *, rate: float, capacity: float, now: float,
             cost: float = 1.0) -> tuple[TokenBucket, float]:
        """Take ``cost`` tokens: (the new bucket, 0.0), or (the refilled bucket, seconds
        until enough tokens are there) when it cannot; a refused take takes nothing."""
        level = min(capacity, self.tokens + max(0.0, now - self.at) * rate)
        if level >= cost:
            return TokenBucket(level - cost, now), 0.0
        wait = (cost - level) / rate if rate > 0 else math.inf
        return TokenBucket(level, now), wait


def retry_after_header(wait: float) -> str:
    """``Retry-After`` in whole seconds, at least 1 (HTTP has no fractions)."""
    return str(max(1, math.ceil(wait))) if math.isfinite(wait) else "3600"
