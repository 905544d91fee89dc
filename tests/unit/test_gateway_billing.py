"""Billing arithmetic: holds, reservations, batched flushes (hypothesis over random runs)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core.errors import InsufficientFunds
from nosgrid.core.ledger import TREASURY, Posting, check_postings, wallet
from nosgrid.core.metering import (
    Meter,
    Prices,
    QuotaExceeded,
    hold_account,
    release_postings,
)

P = Prices(prompt=1, completion=3)


def test_reserve_charge_flush() -> None:
    m = Meter(fee_bps=1_000, topup_chunk=100)
    m.open_key("k", owner="alice", cap=1_000, spent=0, hold=0)
    assert m.top_up_needed("k", 40, wallet_balance=1_000) == 100
    m.add_to_hold("k", 100)
    r = m.reserve("k", 40, now=0)
    assert m.charge(r, model="m", node="n", prompt_tokens=4, completion_tokens=5, prices=P) == 19
    postings = m.flush_postings()
    assert sum(p.amount for p in postings) == 19
    assert {p.dst for p in postings} == {wallet("n"), TREASURY}
    lines = m.take_lines()
    m.flush_done(lines)
    b = m.book("k")
    assert (b.hold, b.spent, b.pending, b.reserved) == (81, 19, 0, 0)


def test_failed_request_costs_nothing() -> None:
    m = Meter(topup_chunk=10)
    m.open_key("k", owner="a", cap=100, spent=0, hold=50)
    r = m.reserve("k", 30, now=0)
    m.cancel(r)
    assert m.flush_postings() == [] and m.book("k").free == 50


def test_over_cap_and_insufficient_funds() -> None:
    m = Meter(topup_chunk=10)
    m.open_key("k", owner="a", cap=100, spent=90, hold=0)
    with pytest.raises(QuotaExceeded) as err:
        m.top_up_needed("k", 11, wallet_balance=10**9)
    assert err.value.reason == "over_cap"
    with pytest.raises(QuotaExceeded) as err:
        m.top_up_needed("k", 10, wallet_balance=5)
    assert err.value.reason == "insufficient_funds"


def test_charge_never_exceeds_what_the_hold_has() -> None:
    m = Meter()
    m.open_key("k", owner="a", cap=10**6, spent=0, hold=10)
    r = m.reserve("k", 10, now=0)
    assert m.charge(r, model="m", node="n", prompt_tokens=100, completion_tokens=100,
                    prices=P) == 10


OPS = st.lists(
    st.tuples(st.sampled_from(["req", "fail", "flush", "release", "spend"]),
              st.integers(0, 2), st.integers(0, 60), st.integers(0, 40), st.integers(0, 40)),
    max_size=60)


@given(OPS, st.integers(0, 3_000), st.integers(0, 2_000), st.integers(1, 500))
def test_batched_billing_conserves_supply_and_never_goes_negative(
        ops: list[tuple[str, int, int, int, int]], funds: int, fee_bps: int, chunk: int) -> None:
    supply = 3 * funds + 1
    balances = {"genesis": -supply, wallet("a"): funds, wallet("b"): funds, wallet("c"): funds,
                "sink": 1}
    owners = ["a", "b", "c"]
    m = Meter(fee_bps=fee_bps, topup_chunk=chunk)
    for i, o in enumerate(owners):
        m.open_key(f"k{i}", owner=o, cap=2_000, spent=0, hold=0)
    charged = {o: 0 for o in owners}
    delivered_cost = {o: 0 for o in owners}

    def apply(postings: list[Posting]) -> None:
        balances.update(check_postings(balances, postings))  # raises if anything goes negative

    for op, who, prompt, completion, worst in ops:
        kid, owner = f"k{who}", owners[who]
        if op in ("req", "fail"):
            need = P.cost(prompt, completion) + worst
            try:
                top = m.top_up_needed(kid, need, wallet_balance=balances.get(wallet(owner), 0))
            except QuotaExceeded:
                continue
            if top:
                apply([Posting(wallet(owner), hold_account(kid), top)])
                m.add_to_hold(kid, top)
            r = m.reserve(kid, need, now=0)
            if op == "fail":
                m.cancel(r)
            else:
                charged[owner] += m.charge(r, model="m", node=f"n{who}", prompt_tokens=prompt,
                                           completion_tokens=completion, prices=P)
                delivered_cost[owner] += P.cost(prompt, completion)
        elif op == "flush":
            postings = m.flush_postings()
            lines = m.take_lines()
            if postings:
                apply(postings)
            m.flush_done(lines)
        elif op == "release":
            rows = m.releasable(now=1e9, idle_s=0)
            if rows:
                apply(release_postings(rows))
            for k, _o, amount in rows:
                m.released(k, amount)
        elif op == "spend":  # the owner spends their wallet elsewhere between flushes
            have = balances.get(wallet(owner), 0)
            if have:
                apply([Posting(wallet(owner), "sink", have)])
        for b in m.books.values():
            assert b.hold == balances.get(hold_account(b.kid), 0)
            assert 0 <= b.pending + b.reserved <= b.hold
            assert b.spent + b.hold <= b.cap
    postings = m.flush_postings()
    lines = m.take_lines()
    if postings:
        apply(postings)
    m.flush_done(lines)
    rows = m.releasable(now=0, idle_s=1e9, everything=True)
    if rows:
        apply(release_postings(rows))
    assert sum(balances.values()) == 0
    assert all(v >= 0 for k, v in balances.items() if k != "genesis")
    assert all(balances.get(hold_account(f"k{i}"), 0) == 0 for i in range(3))
    for o in owners:
        assert charged[o] == delivered_cost[o]  # a client pays exactly the tokens it got
    paid = sum(v for k, v in balances.items() if k.startswith("wallet:n")) + balances.get(
        TREASURY, 0)
    assert paid == sum(charged.values())


def test_ledger_refuses_a_hold_the_wallet_cannot_fund() -> None:
    with pytest.raises(InsufficientFunds):
        check_postings({wallet("a"): 5}, [Posting(wallet("a"), hold_account("k"), 6)])
