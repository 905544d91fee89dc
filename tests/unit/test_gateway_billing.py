"""Billing arithmetic: holds, reservations, charges and bills, over several gateway workers
(hypothesis over random runs)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core.errors import InsufficientFunds, PaymentRequired
from nosgrid.core.ledger import TREASURY, Posting, check_postings, wallet
from nosgrid.core.metering import (
    Charge,
    Meter,
    Prices,
    QuotaExceeded,
    Reservation,
    bill,
    hold_account,
    leftovers,
    release_postings,
)

P = Prices(prompt=1, completion=3)


def test_reserve_charge_flush() -> None:
    m = Meter("w", fee_bps=1_000, topup_chunk=100)
    m.open_key("k", owner="alice", cap=1_000, spent=0, hold=0)
    assert m.top_up_needed("k", 40, wallet_balance=1_000) == 100
    m.add_to_hold("k", 100)
    r = m.reserve("k", 40, now=0)
    c = m.charge(r, model="m", node="n", prompt_tokens=4, completion_tokens=5, prices=P)
    assert c.cost == 19
    paid = bill([c], fee_bps=1_000, worker="w")
    assert list(paid.postings) == ["alice"]
    assert sum(p.amount for p in paid.postings["alice"]) == 19
    assert {p.dst for p in paid.postings["alice"]} == {wallet("n"), TREASURY}
    assert {p.src for p in paid.postings["alice"]} == {hold_account("k", "w")}
    assert paid.meta("alice") == {"requests": 1, "tokens": 9}
    m.flush_done(paid.spend)
    b = m.book("k")
    assert (b.hold, b.held, b.spent, b.pending, b.reserved) == (81, 81, 19, 0, 0)


def test_failed_request_costs_nothing() -> None:
    m = Meter("w", topup_chunk=10)
    m.open_key("k", owner="a", cap=100, spent=0, hold=50)
    r = m.reserve("k", 30, now=0)
    m.cancel(r)
    assert m.book("k").free == 50 and m.book("k").pending == 0


def test_over_cap_and_insufficient_funds() -> None:
    m = Meter("w", topup_chunk=10)
    m.open_key("k", owner="a", cap=100, spent=90, hold=0)
    with pytest.raises(QuotaExceeded) as err:
        m.top_up_needed("k", 11, wallet_balance=10**9)
    assert err.value.reason == "over_cap"
    assert (err.value.http_status, err.value.code) == (429, "insufficient_quota")
    assert isinstance(err.value, PaymentRequired)
    with pytest.raises(QuotaExceeded) as err:
        m.top_up_needed("k", 10, wallet_balance=5)
    assert err.value.reason == "insufficient_funds"


def test_the_cap_counts_what_other_workers_hold() -> None:
    m = Meter("w1", topup_chunk=60)
    m.open_key("k", owner="a", cap=100, spent=0, hold=0)
    m.sync("k", spent=10, held=70)  # another worker spent 10 and holds 70 of this key
    assert m.top_up_needed("k", 20, wallet_balance=10**9) == 20  # the chunk, cut to the room
    with pytest.raises(QuotaExceeded) as err:
        m.top_up_needed("k", 21, wallet_balance=10**9)
    assert err.value.reason == "over_cap"


def test_charge_never_exceeds_what_the_hold_has() -> None:
    m = Meter("w")
    m.open_key("k", owner="a", cap=10**6, spent=0, hold=10)
    r = m.reserve("k", 10, now=0)
    assert m.charge(r, model="m", node="n", prompt_tokens=100, completion_tokens=100,
                    prices=P).cost == 10


def test_a_dead_workers_charges_are_paid_before_its_holds_return() -> None:
    charges = [Charge("k", "a", "m", "n", 2, 2, 8), Charge("k", "a", "m", "n", 1, 0, 1)]
    paid = bill(charges, fee_bps=0, worker="dead")
    assert paid.postings == {"a": [Posting(hold_account("k", "dead"), wallet("n"), 9)]}
    assert leftovers({"k": ("a", 30), "k2": ("b", 5)}, paid) == [("k", "a", 21),
                                                                 ("k2", "b", 5)]


# --- a model of several workers on one database -------------------------------------


@dataclass
class Db:
    """What the gateway keeps in the database: ledger balances, key rows, charges."""

    balances: dict[str, int]
    spent: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    charges: dict[str, list[Charge]] = field(default_factory=dict)

    def apply(self, postings: list[Posting]) -> None:
        self.balances.update(check_postings(self.balances, postings))  # raises if negative


OWNERS = ["a", "b", "c"]
CAP = 2_000
OPS = st.lists(
    st.tuples(st.sampled_from(["req", "fail", "start", "finish", "flush", "release", "spend",
                               "die"]),
              st.integers(0, 1), st.integers(0, 2), st.integers(0, 60), st.integers(0, 40),
              st.integers(0, 40)),
    max_size=80)


@given(OPS, st.integers(0, 3_000), st.integers(0, 2_000), st.integers(1, 500))
def test_batched_billing_conserves_supply_and_never_goes_negative(
        ops: list[tuple[str, int, int, int, int, int]], funds: int, fee_bps: int,
        chunk: int) -> None:
    """Two workers bill three keys at once: top-ups check the cap over both (as the
    database's conditional update does), charges are rows, flushes bill them, a worker may
    die (with requests in flight) and be taken over. Money is conserved, nothing goes
    negative, no key passes its cap, every delivered token is paid exactly once."""
    supply = 3 * funds + 1
    db = Db({"genesis": -supply, **{wallet(o): funds for o in OWNERS}, "sink": 1})
    kids = [f"k{i}" for i in range(3)]
    db.spent, db.held = dict.fromkeys(kids, 0), dict.fromkeys(kids, 0)
    names = iter(f"w{i}" for i in range(1_000))
    workers: list[Meter] = []
    in_flight: dict[str, list[tuple[Reservation, int, int]]] = {}

    def new_worker() -> Meter:
        m = Meter(next(names), fee_bps=fee_bps, topup_chunk=chunk)
        for kid, owner in zip(kids, OWNERS, strict=True):
            m.open_key(kid, owner=owner, cap=CAP, spent=db.spent[kid], hold=0,
                       held=db.held[kid])
        db.charges[m.worker], in_flight[m.worker] = [], []
        return m

    def pay(worker: str) -> dict[str, int]:
        paid = bill(db.charges.pop(worker, []), fee_bps=fee_bps, worker=worker)
        for postings in paid.postings.values():
            db.apply(postings)
        for kid, amount in paid.spend.items():
            db.spent[kid] += amount
            db.held[kid] -= amount
        db.charges[worker] = []
        return paid.spend

    def release(worker: str, rows: list[tuple[str, str, int]]) -> None:
        if rows:
            db.apply(release_postings(rows, worker))
        for kid, _owner, amount in rows:
            db.held[kid] -= amount

    def reserve(m: Meter, kid: str, owner: str, need: int) -> Reservation | None:
        m.sync(kid, spent=db.spent[kid], held=db.held[kid])  # read in the top-up transaction
        try:
            top = m.top_up_needed(kid, need, wallet_balance=db.balances.get(wallet(owner), 0))
        except QuotaExceeded:
            return None
        if top:
            assert db.spent[kid] + db.held[kid] + top <= CAP  # the conditional update passes
            db.held[kid] += top
            db.apply([Posting(wallet(owner), hold_account(kid, m.worker), top)])
            m.add_to_hold(kid, top)
        return m.reserve(kid, need, now=0)

    charged = dict.fromkeys(OWNERS, 0)
    delivered_cost = dict.fromkeys(OWNERS, 0)
    workers = [new_worker(), new_worker()]
    for op, w, who, prompt, completion, worst in ops:
        m, kid, owner = workers[w], kids[who], OWNERS[who]
        need = P.cost(prompt, completion) + worst
        if op in ("req", "fail", "start"):
            r = reserve(m, kid, owner, need)
            if r is None:
                continue
            if op == "fail":
                m.cancel(r)
            elif op == "start":
                in_flight[m.worker].append((r, prompt, completion))
            else:
                c = m.charge(r, model="m", node=f"n{who}", prompt_tokens=prompt,
                             completion_tokens=completion, prices=P)
                db.charges[m.worker].append(c)
                charged[owner] += c.cost
                delivered_cost[owner] += P.cost(prompt, completion)
        elif op == "finish" and in_flight[m.worker]:
            r, prompt, completion = in_flight[m.worker].pop(0)
            c = m.charge(r, model="m", node=f"n{kids.index(r.kid)}", prompt_tokens=prompt,
                         completion_tokens=completion, prices=P)
            db.charges[m.worker].append(c)
            owner = m.book(r.kid).owner
            charged[owner] += c.cost
            delivered_cost[owner] += P.cost(prompt, completion)
        elif op == "flush":
            releases = m.releasable(now=1e9, idle_s=1e9)
            m.flush_done(pay(m.worker))
            release(m.worker, releases)
            for k, _o, amount in releases:
                m.released(k, amount)
        elif op == "release":
            releases = m.releasable(now=1e9, idle_s=0)
            m.flush_done(pay(m.worker))
            release(m.worker, releases)
            for k, _o, amount in releases:
                m.released(k, amount)
        elif op == "spend":  # the owner spends their wallet elsewhere between flushes
            have = db.balances.get(wallet(owner), 0)
            if have:
                db.apply([Posting(wallet(owner), "sink", have)])
        elif op == "die":  # killed: in-flight requests are never charged; a survivor takes over
            dead = m.worker
            holds = {k: (o, db.balances.get(hold_account(k, dead), 0))
                     for k, o in zip(kids, OWNERS, strict=True)}
            paid = bill(db.charges[dead], fee_bps=fee_bps, worker=dead)
            pay(dead)
            release(dead, leftovers(holds, paid))
            del db.charges[dead], in_flight[dead]
            workers[w] = new_worker()
        for kid in kids:
            holds = [db.balances.get(hold_account(kid, x.worker), 0) for x in workers]
            assert db.held[kid] == sum(holds)
            assert db.spent[kid] + db.held[kid] <= CAP
        for x in workers:
            for b in x.books.values():
                assert b.hold == db.balances.get(hold_account(b.kid, x.worker), 0)
                assert 0 <= b.pending + b.reserved <= b.hold
                assert b.pending == sum(c.cost for c in db.charges[x.worker] if c.kid == b.kid)
    for m in workers:  # a clean stop: in-flight requests abandoned, everything paid, released
        for r, _p, _c in in_flight[m.worker]:
            m.cancel(r)
        releases = m.remaining()
        m.flush_done(pay(m.worker))
        release(m.worker, releases)
    assert sum(db.balances.values()) == 0
    assert all(v >= 0 for k, v in db.balances.items() if k != "genesis")
    assert all(v == 0 for k, v in db.balances.items() if k.startswith("gwhold:"))
    assert all(v == 0 for v in db.held.values())
    for o in OWNERS:
        assert charged[o] == delivered_cost[o]  # a client pays exactly the tokens it got
    paid_out = sum(v for k, v in db.balances.items() if k.startswith("wallet:n")) + \
        db.balances.get(TREASURY, 0)
    assert paid_out == sum(charged.values())
    for kid, o in zip(kids, OWNERS, strict=True):
        assert db.spent[kid] == charged[o] <= CAP


def test_ledger_refuses_a_hold_the_wallet_cannot_fund() -> None:
    with pytest.raises(InsufficientFunds):
        check_postings({wallet("a"): 5}, [Posting(wallet("a"), hold_account("k", "w"), 6)])
