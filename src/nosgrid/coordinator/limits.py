"""Request budgets at the door: the ASGI middleware, the buckets, and the keys' standing.

Installed inside the body limit and before anything that parses, verifies or reads the
database (see :mod:`nosgrid.core.budgets` for the rules). A refused request costs a dict
lookup and a few float operations; the benchmark ``bench/flood.py`` measures it.

The buckets sit behind :class:`BucketStore` so that several coordinator processes can
later share them (a database or shared-memory store); :class:`MemoryBuckets` is the one
process default, bounded: the least recently used keys are forgotten first, and a
forgotten key comes back with a full bucket, which only ever errs towards the client.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nosgrid.core.budgets import (
    PUBKEY_FORMAT,
    BudgetParams,
    Rate,
    RouteClass,
    TokenBucket,
    retry_after_header,
    route_class,
)
from nosgrid.core.errors import BadSignature, NosgridError, RateLimited
from nosgrid.core.identity import HEADER_PUBKEY, HEADER_TIMESTAMP

#: how long a key's looked-up standing is trusted; an unknown key is looked up again sooner
KNOWN_TTL_S = 30.0
UNKNOWN_TTL_S = 5.0


class BucketStore(Protocol):
    """Where bucket levels live (one process: memory; several: shared storage)."""

    def take(self, key: tuple[str, ...], rate: Rate, multiplier: float, now: float) -> float:
        """Take one token; 0.0, or the seconds until one is there (nothing taken)."""
        ...


class MemoryBuckets:
    """Bucket levels in this process's memory, at most ``max_tracked`` of them."""

    def __init__(self, max_tracked: int) -> None:
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[tuple[str, ...], TokenBucket] = OrderedDict()

    def take(self, key: tuple[str, ...], rate: Rate, multiplier: float, now: float) -> float:
        capacity, per_second = rate.burst * multiplier, rate.per_second * multiplier
        bucket = self._buckets.pop(key, None) or TokenBucket.full(capacity, now)
        bucket, wait = bucket.take(rate=per_second, capacity=capacity, now=now)
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_tracked:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True, slots=True)
class Standing:
    """What a key's budget is scaled by, until ``until``; ``multiplier`` None: unknown."""

    multiplier: float | None
    until: float


class RequestBudgets:
    """The coordinator's budgets: which bucket a request draws on, and the keys it knows.

    ``lookup(key)`` reads a key's standing from the database (its multiplier, or None for
    a key that is neither funded, staked nor a registered node); it is called only after
    the key's signature verified (:meth:`learn`), never on the way in.
    """

    def __init__(self, params: BudgetParams, lookup: Callable[[str], float | None],
                 clock: Callable[[], float] = time.monotonic,
                 buckets: BucketStore | None = None) -> None:
        self.params, self.lookup, self.clock = params, lookup, clock
        self.buckets: BucketStore = buckets or MemoryBuckets(params.max_tracked)
        self._standing: OrderedDict[str, Standing] = OrderedDict()
        self._streams: dict[str, int] = {}
        self.refused: dict[str, int] = {}

    # -- who is known ------------------------------------------------------------------------

    def multiplier(self, key: str, now: float) -> float | None:
        """The key's budget multiplier if the coordinator knows it (and not stale)."""
        s = self._standing.get(key)
        return s.multiplier if s is not None and s.until > now else None

    def learn(self, key: str) -> None:
        """After ``key``'s request was verified: look its standing up if it is stale."""
        now = self.clock()
        s = self._standing.get(key)
        if s is not None and s.until > now:
            return
        self.remember(key, self.lookup(key), now)

    def remember(self, key: str, multiplier: float | None, now: float | None = None) -> None:
        """Record a standing (a gateway key that verified is known at 1×)."""
        now = self.clock() if now is None else now
        ttl = KNOWN_TTL_S if multiplier is not None else UNKNOWN_TTL_S
        self._standing.pop(key, None)
        self._standing[key] = Standing(multiplier, now + ttl)
        if len(self._standing) > self.params.max_tracked:
            self._standing.popitem(last=False)

    # -- at the door ---------------------------------------------------------------------------

    def admit(self, cls: RouteClass, key: str | None, ip: str) -> float:
        """Take a token for a request of ``cls`` from ``key`` (None: unsigned) at ``ip``:
        0.0, or the seconds to wait."""
        now = self.clock()
        mult = self.multiplier(key, now) if key else None
        if mult is None:  # unsigned, or a key we do not know: the IP's shared budget
            rate = self.params.anonymous_service if cls == "service" else self.params.anonymous
            return self.buckets.take(("ip", ip, cls), rate, 1.0, now)
        return self.buckets.take(("key", key or "", cls), self.params.keyed[cls], mult, now)

    def open_stream(self, who: str) -> bool:
        """Count a stream ``who`` opens; False when it holds its maximum already."""
        held = self._streams.get(who, 0)
        if held >= self.params.max_open_streams:
            return False
        self._streams[who] = held + 1
        return True

    def close_stream(self, who: str) -> None:
        held = self._streams.get(who, 0) - 1
        if held > 0:
            self._streams[who] = held
        else:
            self._streams.pop(who, None)

    def count_refusal(self, cls: str) -> None:
        self.refused[cls] = self.refused.get(cls, 0) + 1


def _refusal_body(cls: str, retry: str) -> RateLimited:
    return RateLimited(f"too many {cls} requests from this caller; retry in {retry} s "
                       "(unsigned requests and keys that are not funded, staked or "
                       "registered share a small budget per address)",
                       route_class=cls, retry_after=int(retry))


def _is_stream(scope: Scope) -> bool:
    """A followed log (``?follow=true``): the one streaming read of the coordinator's API."""
    query: bytes = scope.get("query_string") or b""
    return scope["method"] == "GET" and b"follow=true" in query.lower() \
        and scope["path"].endswith("/logs")


class Budgets:
    """ASGI middleware: refuse a request over its budget (429 + ``Retry-After``) or with
    malformed signature headers (401) before it is parsed, verified or looked up."""

    def __init__(self, app: ASGIApp, budgets: RequestBudgets,
                 render: Callable[[NosgridError, str, dict[str, str]], ASGIApp]) -> None:
        self.app, self.budgets, self.render = app, budgets, render
        #: the few distinct 429 answers, rendered once: a refusal must stay cheap
        self._refusals: dict[tuple[bool, str, str], list[Message]] = {}

    async def _refuse(self, cls: str, retry: str, path: str, send: Send) -> None:
        shape = path.startswith("/openai/")
        messages = self._refusals.get((shape, cls, retry))
        if messages is None:
            messages = await _rendered(self.render(_refusal_body(cls, retry), path,
                                                   {"Retry-After": retry}))
            if len(self._refusals) < 1_000:
                self._refusals[(shape, cls, retry)] = messages
        for message in messages:
            await send(message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.budgets.params.enabled:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        streaming = _is_stream(scope)
        cls = route_class(scope["method"], path, streaming=streaming)
        if cls is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        key = _caller(headers, cls)
        if key is None:
            await self.render(BadSignature("the x-nosgrid-pubkey or -timestamp header is "
                                           "malformed"), path, {})(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        wait = self.budgets.admit(cls, key or None, ip)
        if wait > 0:
            self.budgets.count_refusal(cls)
            await self._refuse(cls, retry_after_header(wait), path, send)
            return
        if not streaming:
            await self.app(scope, receive, send)
            return
        who = key or f"ip:{ip}"
        if not self.budgets.open_stream(who):
            self.budgets.count_refusal("stream")
            err = RateLimited(f"this caller holds {self.budgets.params.max_open_streams} open "
                              "streams already; close one first", route_class="stream",
                              retry_after=5)
            await self.render(err, path, {"Retry-After": "5"})(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.budgets.close_stream(who)


def _caller(headers: dict[bytes, bytes], cls: RouteClass) -> str | None:
    """The key a request claims ('' for none; None for a malformed header).

    A gateway request names its API key in ``Authorization``; its budget is that key's
    once the gateway has verified it (``RequestBudgets.remember``).
    """
    if cls == "gateway":
        auth = headers.get(b"authorization", b"")
        return auth.decode("latin-1")[:256] if auth else ""
    raw = headers.get(HEADER_PUBKEY.lower().encode())
    if raw is None:
        return ""
    ts = headers.get(HEADER_TIMESTAMP.lower().encode(), b"0")
    pubkey = raw.decode("latin-1")
    if not PUBKEY_FORMAT.match(pubkey) or not ts.isdigit() or len(ts) > 12:
        return None
    return pubkey


async def _rendered(response: ASGIApp) -> list[Message]:
    """The ASGI messages ``response`` sends (to replay them without rendering again)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def collect(message: Message) -> None:
        sent.append(message)

    await response({"type": "http", "method": "GET", "path": "/", "headers": []}, receive,
                   collect)
    return sent
