"""Per-token billing for the gateway: holds, reservations, and batched journal entries (pure).

Money never moves per request. Each key has a **hold** account in the ledger
(``gwhold:<kid>``), topped up from the owner's wallet in chunks; a request first
**reserves** its worst case (prompt estimate + ``max_tokens``) against the hold, then is
**charged** for the tokens actually delivered; what it did not use returns to the hold at
once. Charges accumulate in memory and a **flush** turns them into one journal entry:
hold → node wallet (price minus the treasury fee) and hold → treasury. Idle, revoked or
expired keys' holds flow back to the owner's wallet.

Why this cannot overspend: a reservation is only granted out of money already moved into
the hold (``hold − pending − reserved``), and a top-up is a ledger entry whose debit is the
ledger's conditional one, so the wallet can never go negative and the hold can never go
below what was charged against it. The cap is checked against ``spent + hold + top-up``.

>>> m = Meter(fee_bps=1_000, topup_chunk=1_000)
>>> m.open_key("k", owner="alice", cap=10_000, spent=0, hold=0)
>>> m.top_up_needed("k", 300, wallet_balance=5_000)
1000
>>> m.add_to_hold("k", 1_000)
>>> r = m.reserve("k", 300, now=0)
>>> m.charge(r, model="m", node="n", prompt_tokens=10, completion_tokens=20,
...          prices=Prices(prompt=1, completion=2))
50
>>> [p.as_list() for p in m.flush_postings()]
[['gwhold:k', 'wallet:n', 45], ['gwhold:k', 'treasury', 5]]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from nosgrid.core.ledger import GATEWAY_HOLD_PREFIX, TREASURY, Posting, gateway_hold, wallet

HOLD_PREFIX: Final = GATEWAY_HOLD_PREFIX


def hold_account(kid: str) -> str:
    """The ledger account that holds a key's pre-paid, not yet charged money."""
    return gateway_hold(kid)


class QuotaExceeded(Exception):
    """A request the key cannot pay for: ``reason`` is ``over_cap`` or ``insufficient_funds``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Prices:
    """NOS base units per prompt token and per completion token, for one model."""

    prompt: int = 1
    completion: int = 2

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        return self.prompt * max(0, prompt_tokens) + self.completion * max(0, completion_tokens)


@dataclass
class KeyBook:
    """What the meter knows of one key (the hold mirrors the ledger; we are its only writer)."""

    kid: str
    owner: str
    cap: int
    spent: int = 0  # charged and flushed to the ledger
    hold: int = 0  # balance of gwhold:<kid>
    pending: int = 0  # charged, not yet flushed
    reserved: int = 0  # in-flight worst cases
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


@dataclass
class UsageLine:
    """Tokens and cost of one (key, model, node) since the last flush."""

    owner: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cost: int = 0


@dataclass
class Meter:
    """The gateway's in-memory books. Every method is pure bookkeeping; the gateway applies
    the postings it returns through the ledger and then calls the matching ``*_done``."""

    fee_bps: int = 1_000
    topup_chunk: int = 1_000_000
    books: dict[str, KeyBook] = field(default_factory=dict)
    lines: dict[tuple[str, str, str], UsageLine] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def open_key(self, kid: str, *, owner: str, cap: int, spent: int, hold: int) -> None:
        if kid not in self.books:
            self.books[kid] = KeyBook(kid, owner, cap, spent, hold)

    def book(self, kid: str) -> KeyBook:
        return self.books[kid]

    # -- reserving ------------------------------------------------------------------

    def top_up_needed(self, kid: str, amount: int, *, wallet_balance: int) -> int:
        """How much to move wallet → hold before reserving ``amount`` (0: none).

        Raises :class:`QuotaExceeded` when the cap or the wallet cannot cover it.
        """
        b = self.books[kid]
        if b.spent + b.pending + b.reserved + amount > b.cap:
            raise QuotaExceeded("over_cap", f"the API key {kid} would pass its spend cap "
                                f"({b.cap} base units, {b.spent + b.pending} spent); create "
                                "a key with a higher --cap")
        short = amount - b.free
        if short <= 0:
            return 0
        room = b.cap - b.spent - b.hold
        want = min(max(short, self.topup_chunk), room, wallet_balance)
        if want < short:
            raise QuotaExceeded("insufficient_funds", f"the wallet {b.owner} has "
                                f"{wallet_balance} base units, the request may cost "
                                f"{amount}; add funds to it")
        return want

    def add_to_hold(self, kid: str, amount: int) -> None:
        self.books[kid].hold += amount

    def reserve(self, kid: str, amount: int, *, now: float) -> Reservation:
        b = self.books[kid]
        if amount > b.free:
            raise QuotaExceeded("insufficient_funds", "top up the hold first")
        b.reserved += amount
        b.last_used = now
        return Reservation(kid, amount, next(self._ids))

    def cancel(self, res: Reservation) -> None:
        """A failed request: nothing is charged; its reservation returns to the hold."""
        self.books[res.kid].reserved -= res.amount

    def charge(self, res: Reservation, *, model: str, node: str, prompt_tokens: int,
               completion_tokens: int, prices: Prices) -> int:
        """End a reservation, charging the tokens delivered; returns the amount charged.

        A charge never exceeds the reservation plus the hold's free money, so a wrong
        estimate can under-charge (logged by the caller) but never overdraw.
        """
        b = self.books[res.kid]
        b.reserved -= res.amount
        cost = min(prices.cost(prompt_tokens, completion_tokens), b.free)
        b.pending += cost
        line = self.lines.setdefault((res.kid, model, node), UsageLine(b.owner))
        line.prompt_tokens += max(0, prompt_tokens)
        line.completion_tokens += max(0, completion_tokens)
        line.requests += 1
        line.cost += cost
        return cost

    # -- flushing -------------------------------------------------------------------

    def split(self, amount: int) -> tuple[int, int]:
        """(node share, treasury fee) of ``amount``; they sum to ``amount``."""
        fee = amount * self.fee_bps // 10_000
        return amount - fee, fee

    def flush_postings(self) -> list[Posting]:
        """The postings paying every pending charge (hold → node, hold → treasury)."""
        by_pair: dict[tuple[str, str], int] = {}
        for (kid, _model, node), line in sorted(self.lines.items()):
            if line.cost:
                by_pair[(kid, node)] = by_pair.get((kid, node), 0) + line.cost
        postings: list[Posting] = []
        fees: dict[str, int] = {}
        for (kid, node), amount in sorted(by_pair.items()):
            share, fee = self.split(amount)
            if share:
                postings.append(Posting(hold_account(kid), wallet(node), share))
            if fee:
                fees[kid] = fees.get(kid, 0) + fee
        postings += [Posting(hold_account(kid), TREASURY, fee) for kid, fee in sorted(fees.items())]
        return postings

    def take_lines(self) -> dict[tuple[str, str, str], UsageLine]:
        lines, self.lines = self.lines, {}
        return lines

    def flush_done(self, lines: dict[tuple[str, str, str], UsageLine]) -> None:
        """The flush entry committed: charged money left the holds."""
        for (kid, _model, _node), line in lines.items():
            b = self.books[kid]
            b.pending -= line.cost
            b.hold -= line.cost
            b.spent += line.cost

    def flush_failed(self, lines: dict[tuple[str, str, str], UsageLine]) -> None:
        """Put lines back after a failed flush so the next one retries them."""
        for key, line in lines.items():
            mine = self.lines.setdefault(key, UsageLine(line.owner))
            mine.prompt_tokens += line.prompt_tokens
            mine.completion_tokens += line.completion_tokens
            mine.requests += line.requests
            mine.cost += line.cost

    def releasable(self, *, now: float, idle_s: float, everything: bool = False
                   ) -> list[tuple[str, str, int]]:
        """(kid, owner, amount) for holds to return to their owners: keys closed or idle
        for ``idle_s`` (or all, at shutdown) with nothing in flight; what is pending stays."""
        out = []
        for b in self.books.values():
            amount = b.hold - b.pending  # pending charges stay to be paid from the hold
            if amount <= 0 or b.reserved:
                continue
            if everything or b.closed or now - b.last_used >= idle_s:
                out.append((b.kid, b.owner, amount))
        return out

    def released(self, kid: str, amount: int) -> None:
        self.books[kid].hold -= amount


def release_postings(rows: list[tuple[str, str, int]]) -> list[Posting]:
    return [Posting(hold_account(kid), wallet(owner), amount) for kid, owner, amount in rows
            if amount > 0]


__all__ = ["HOLD_PREFIX", "KeyBook", "Meter", "Prices", "QuotaExceeded", "Reservation",
           "UsageLine", "hold_account", "release_postings"]
