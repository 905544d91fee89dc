"""Per-token billing for the gateway: holds, reservations, charges and their bills (pure).

Money never moves per request. Each key has a **hold** account per gateway worker (one
coordinator process) in the ledger, ``gwhold:<kid>:<worker>``, topped up from the owner's
wallet in chunks; only that worker spends from it, so its books here mirror it exactly. A
request first **reserves** its worst case (prompt estimate + ``max_tokens``) against the
hold, then is **charged** for the tokens actually delivered; what it did not use returns to
the hold at once. The gateway writes each :class:`Charge` to the database when its request
ends, and a **flush** turns a worker's charges into its :func:`bill`: one journal entry per
key owner, hold → node wallet (price minus the treasury fee) and hold → treasury. Idle,
revoked or expired keys' holds flow back to the owner's wallet; so do a dead worker's,
once its charges are billed (:func:`leftovers`).

Why this cannot overspend: a reservation is only granted out of money already moved into
the worker's hold (``hold − pending − reserved``), and a top-up is a ledger entry whose
debit is the ledger's conditional one, so the wallet can never go negative and the hold can
never go below what was charged against it. The cap is checked against the key's figures
over all workers, ``spent + held + top-up`` (``held``: the sum of the key's holds), and the
gateway makes that check and the top-up one transaction, so two workers can never together
pass a cap.

>>> m = Meter("w1", fee_bps=1_000, topup_chunk=1_000)
>>> m.open_key("k", owner="alice", cap=10_000, spent=0, hold=0)
>>> m.top_up_needed("k", 300, wallet_balance=5_000)
1000
>>> m.add_to_hold("k", 1_000)
>>> r = m.reserve("k", 300, now=0)
>>> c = m.charge(r, model="m", node="n", prompt_tokens=10, completion_tokens=20,
...              prices=Prices(prompt=1, completion=2))
>>> c.cost
50
>>> [p.as_list() for p in bill([c], fee_bps=1_000, worker="w1").postings["alice"]]
[['gwhold:k:w1', 'wallet:n', 45], ['gwhold:k:w1', 'treasury', 5]]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from nosgrid.core.errors import QuotaExceeded
from nosgrid.core.ledger import (
    GATEWAY_HOLD_PREFIX,
    TREASURY,
    Posting,
    gateway_audit_hold,
    gateway_hold,
    wallet,
)

HOLD_PREFIX: Final = GATEWAY_HOLD_PREFIX


def hold_account(kid: str, worker: str) -> str:
    """The ledger account that holds a key's pre-paid, not yet charged money in one worker."""
    return gateway_hold(kid, worker)


@dataclass(frozen=True, slots=True)
class Prices:
    """NOS base units per prompt token and per completion token, for one model."""

    prompt: int = 1
    completion: int = 2

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        return self.prompt * max(0, prompt_tokens) + self.completion * max(0, completion_tokens)


@dataclass
class KeyBook:
    """What one worker's meter knows of one key. ``hold``, ``pending`` and ``reserved`` are
    this worker's (it is the only writer of its hold account, so they are exact); ``spent``
    and ``held`` are the key's over all workers as last read from the database (a top-up
    reads them again in its own transaction)."""

    kid: str
    owner: str
    cap: int
    spent: int = 0  # charged and flushed to the ledger, all workers
    hold: int = 0  # balance of gwhold:<kid>:<this worker>
    held: int = 0  # the key's holds summed over all workers (this one's included)
    pending: int = 0  # charged here, not yet flushed
    reserved: int = 0  # in-flight worst cases here
    last_used: float = 0.0
    closed: bool = False  # revoked or expired: release the hold when idle

    @property
    def free(self) -> int:
        return self.hold - self.pending - self.reserved


@dataclass(frozen=True, slots=True)
class Reservation:
    kid: str
    amount: int
    id: int


@dataclass(frozen=True, slots=True)
class Charge:
    """What one request costs its key: written to the database when the request ends, paid
    at the worker's next flush."""

    kid: str
    owner: str
    model: str
    node: str
    prompt_tokens: int
    completion_tokens: int
    cost: int
    #: the sha256 of the request's usage record ('' when none: embeddings)
    record: str = ""


@dataclass
class UsageLine:
    """Tokens and cost of one (key, model) in one bill."""

    owner: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cost: int = 0

    def add(self, c: Charge) -> None:
        self.prompt_tokens += c.prompt_tokens
        self.completion_tokens += c.completion_tokens
        self.requests += 1
        self.cost += c.cost


@dataclass
class Meter:
    """One worker's in-memory books. Every method is pure bookkeeping; the gateway applies
    the postings through the ledger and then calls the matching ``*_done``/``released``."""

    worker: str
    fee_bps: int = 1_000
    topup_chunk: int = 1_000_000
    books: dict[str, KeyBook] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def open_key(self, kid: str, *, owner: str, cap: int, spent: int, hold: int,
                 held: int | None = None) -> None:
        if kid not in self.books:
            self.books[kid] = KeyBook(kid, owner, cap, spent, hold,
                                      hold if held is None else held)

    def book(self, kid: str) -> KeyBook:
        return self.books[kid]

    def sync(self, kid: str, *, spent: int, held: int) -> None:
        """The key's figures over all workers, as the database has them now."""
        b = self.books[kid]
        b.spent, b.held = spent, held

    # -- reserving ------------------------------------------------------------------

    def top_up_needed(self, kid: str, amount: int, *, wallet_balance: int) -> int:
        """How much to move wallet → hold before reserving ``amount`` (0: none).

        Raises :class:`QuotaExceeded` when the cap (over all workers: ``spent + held``) or
        the wallet cannot cover it.
        """
        b = self.books[kid]
        short = amount - b.free
        if short <= 0:
            return 0
        room = b.cap - b.spent - b.held
        if short > room:
            raise QuotaExceeded(f"the API key {kid} would pass its spend cap ({b.cap} base "
                                f"units; {b.spent} spent, {b.held} held for requests); "
                                "create a key with a higher --cap", reason="over_cap")
        want = min(max(short, self.topup_chunk), room, wallet_balance)
        if want < short:
            raise QuotaExceeded(f"the wallet {b.owner} has {wallet_balance} base units, the "
                                f"request may cost {amount}; add funds to it",
                                reason="insufficient_funds")
        return want

    def add_to_hold(self, kid: str, amount: int) -> None:
        b = self.books[kid]
        b.hold += amount
        b.held += amount

    def reserve(self, kid: str, amount: int, *, now: float) -> Reservation:
        b = self.books[kid]
        if amount > b.free:
            raise QuotaExceeded("top up the hold first", reason="insufficient_funds")
        b.reserved += amount
        b.last_used = now
        return Reservation(kid, amount, next(self._ids))

    def cancel(self, res: Reservation) -> None:
        """A failed request: nothing is charged; its reservation returns to the hold."""
        self.books[res.kid].reserved -= res.amount

    def charge(self, res: Reservation, *, model: str, node: str, prompt_tokens: int,
               completion_tokens: int, prices: Prices, record: str = "") -> Charge:
        """End a reservation, charging the tokens delivered; returns the charge to record.

        A charge never exceeds the reservation plus the hold's free money, so a wrong
        estimate can under-charge (logged by the caller) but never overdraw.
        """
        b = self.books[res.kid]
        b.reserved -= res.amount
        cost = max(0, min(prices.cost(prompt_tokens, completion_tokens), b.free))
        b.pending += cost
        return Charge(res.kid, b.owner, model, node, max(0, prompt_tokens),
                      max(0, completion_tokens), cost, record)

    # -- flushing -------------------------------------------------------------------

    def flush_done(self, spend: Mapping[str, int]) -> None:
        """A bill committed: its charged money (``spend`` per key) left this worker's holds."""
        for kid, amount in spend.items():
            b = self.books.get(kid)
            if b is not None:
                b.pending -= amount
                b.hold -= amount
                b.held -= amount
                b.spent += amount

    def releasable(self, *, now: float, idle_s: float, everything: bool = False
                   ) -> list[tuple[str, str, int]]:
        """(kid, owner, amount) for holds to return to their owners: keys closed or idle
        for ``idle_s`` with nothing in flight, or all of them (``everything``: the worker
        stops); what is pending stays, to be paid by the flush that releases."""
        out = []
        for b in self.books.values():
            amount = b.hold - b.pending
            if amount <= 0 or (b.reserved and not everything):
                continue
            if everything or b.closed or now - b.last_used >= idle_s:
                out.append((b.kid, b.owner, amount))
        return out

    def remaining(self) -> list[tuple[str, str, int]]:
        """(kid, owner, amount) of every hold past its pending charges: what a worker that
        stops returns (requests still in flight then are abandoned, never charged)."""
        return [(b.kid, b.owner, b.hold - b.pending) for b in self.books.values()
                if b.hold - b.pending > 0]

    def released(self, kid: str, amount: int) -> None:
        b = self.books[kid]
        b.hold -= amount
        b.held -= amount


def split(amount: int, fee_bps: int) -> tuple[int, int]:
    """(node share, treasury fee) of ``amount``; they sum to ``amount``."""
    fee = amount * fee_bps // 10_000
    return amount - fee, fee


@dataclass
class Bill:
    """What a worker's charges come to: the postings of one journal entry per key owner
    (out of that worker's holds), usage per (key, model) and spend per key."""

    postings: dict[str, list[Posting]] = field(default_factory=dict)
    usage: dict[tuple[str, str], UsageLine] = field(default_factory=dict)
    spend: dict[str, int] = field(default_factory=dict)
    #: owner → the usage-record hashes its entry bills (sorted)
    records: dict[str, list[str]] = field(default_factory=dict)

    def meta(self, owner: str) -> dict[str, Any]:
        """The usage entry's meta: requests and tokens of ``owner``'s keys in this bill, and
        the hashes of the usage records it bills (so no record can change after billing)."""
        mine = [u for u in self.usage.values() if u.owner == owner]
        out: dict[str, Any] = {"requests": sum(u.requests for u in mine),
                               "tokens": sum(u.prompt_tokens + u.completion_tokens
                                             for u in mine)}
        if self.records.get(owner):
            out["records"] = self.records[owner]
        return out


def bill(charges: Iterable[Charge], *, fee_bps: int, worker: str,
         audit_hold: bool = False) -> Bill:
    """Pay ``charges`` out of ``worker``'s holds: per key and node the node's share, per key
    the treasury's fee; grouped by key owner (sorted), one entry each.

    With ``audit_hold`` the cost of each charge that has a usage record goes whole into
    ``gwaudit:<owner>:<node>`` instead, until its audit window ends
    (:func:`settle_audit_holds`); charges without a record are paid at once.
    """
    out = Bill()
    owners: dict[str, str] = {}
    by_pair: dict[tuple[str, str], int] = {}
    held: dict[tuple[str, str], int] = {}
    for c in charges:
        owners[c.kid] = c.owner
        out.usage.setdefault((c.kid, c.model), UsageLine(c.owner)).add(c)
        if c.record:
            out.records.setdefault(c.owner, []).append(c.record)
        if c.cost and audit_hold and c.record:
            held[(c.kid, c.node)] = held.get((c.kid, c.node), 0) + c.cost
            out.spend[c.kid] = out.spend.get(c.kid, 0) + c.cost
        elif c.cost:
            by_pair[(c.kid, c.node)] = by_pair.get((c.kid, c.node), 0) + c.cost
            out.spend[c.kid] = out.spend.get(c.kid, 0) + c.cost
    shares: list[tuple[str, Posting]] = []
    fees: dict[str, int] = {}
    for (kid, node), amount in sorted(by_pair.items()):
        share, fee = split(amount, fee_bps)
        if share:
            shares.append((kid, Posting(hold_account(kid, worker), wallet(node), share)))
        if fee:
            fees[kid] = fees.get(kid, 0) + fee
    by_owner: dict[str, list[Posting]] = {}
    holds = [(kid, Posting(hold_account(kid, worker), gateway_audit_hold(owners[kid], node),
                           amount)) for (kid, node), amount in sorted(held.items())]
    for kid, p in shares + [(kid, Posting(hold_account(kid, worker), TREASURY, fee))
                            for kid, fee in sorted(fees.items())] + holds:
        by_owner.setdefault(owners[kid], []).append(p)
    out.postings = dict(sorted(by_owner.items()))
    out.records = {o: sorted(set(r)) for o, r in sorted(out.records.items())}
    return out


@dataclass(frozen=True, slots=True)
class HeldRequest:
    """One recorded request whose cost sits in ``gwaudit:<owner>:<node>``: ``refund`` when
    its audit failed, else it is paid out (its window ended, not sampled or clean)."""

    record: str
    owner: str
    node: str
    cost: int
    refund: bool = False


def settle_audit_holds(requests: Iterable[HeldRequest], *, fee_bps: int
                       ) -> dict[str, list[Posting]]:
    """The postings that end these requests' audit holds, one list per owner (sorted): a
    failed audit returns the whole cost to the owner; otherwise the node gets its share and
    the treasury its fee, as :func:`bill` would have paid them without the hold.

    >>> r = [HeldRequest("h1", "alice", "n1", 100), HeldRequest("h2", "alice", "n1", 50,
    ...      refund=True)]
    >>> for p in settle_audit_holds(r, fee_bps=1_000)["alice"]:
    ...     print(p.as_list())
    ['gwaudit:alice:n1', 'wallet:n1', 90]
    ['gwaudit:alice:n1', 'treasury', 10]
    ['gwaudit:alice:n1', 'wallet:alice', 50]
    """
    paid: dict[tuple[str, str], int] = {}
    refunded: dict[tuple[str, str], int] = {}
    for r in requests:
        if r.cost <= 0:
            continue
        book = refunded if r.refund else paid
        book[(r.owner, r.node)] = book.get((r.owner, r.node), 0) + r.cost
    out: dict[str, list[Posting]] = {}
    for (owner, node), amount in sorted(paid.items()):
        share, fee = split(amount, fee_bps)
        src = gateway_audit_hold(owner, node)
        if share:
            out.setdefault(owner, []).append(Posting(src, wallet(node), share))
        if fee:
            out.setdefault(owner, []).append(Posting(src, TREASURY, fee))
    for (owner, node), amount in sorted(refunded.items()):
        out.setdefault(owner, []).append(
            Posting(gateway_audit_hold(owner, node), wallet(owner), amount))
    return dict(sorted(out.items()))


def leftovers(holds: Mapping[str, tuple[str, int]], paid: Bill
              ) -> list[tuple[str, str, int]]:
    """(kid, owner, amount) left in a dead worker's holds (``kid → (owner, balance)``) once
    ``paid``, its charges' bill, is paid out of them: what returns to the owners."""
    return [(kid, owner, balance - paid.spend.get(kid, 0))
            for kid, (owner, balance) in sorted(holds.items())
            if balance - paid.spend.get(kid, 0) > 0]


def release_postings(rows: Iterable[tuple[str, str, int]], worker: str) -> list[Posting]:
    return [Posting(hold_account(kid, worker), wallet(owner), amount)
            for kid, owner, amount in rows if amount > 0]


__all__ = ["HOLD_PREFIX", "Bill", "Charge", "HeldRequest", "KeyBook", "Meter", "Prices",
           "QuotaExceeded", "Reservation", "UsageLine", "bill", "hold_account", "leftovers",
           "release_postings", "settle_audit_holds", "split"]
