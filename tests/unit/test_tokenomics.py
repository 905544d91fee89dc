"""Tokenomics rules: allocation, vesting, emission bounded by the reserve, fee split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core import tokenomics as tk
from nosgrid.core.errors import InvalidInput
from nosgrid.core.jobs import state as jobs
from nosgrid.core.ledger import (
    DEFAULT_ALLOCATION_BPS,
    REWARDS_POOL,
    check_postings,
    default_allocations,
    genesis_entry,
    replay,
)
from nosgrid.core.markets import MarketParams
from nosgrid.core.money import BASE_UNITS_PER_NOS, TOTAL_SUPPLY


def test_ledger_default_allocation_is_ours() -> None:
    assert dict(DEFAULT_ALLOCATION_BPS) == dict(tk.ALLOCATION_BPS)
    assert default_allocations() == tk.allocations()
    assert sum(tk.allocations().values()) == TOTAL_SUPPLY
    assert tk.reserve_amount() == 25_000_000 * BASE_UNITS_PER_NOS


def test_allocation_dust_goes_to_reserve() -> None:
    p = tk.EconomicParams(allocation_bps={"alloc:a": 3_333, "alloc:b": 3_333,
                                          tk.RESERVE: 3_334}, vesting={})
    alloc = tk.allocations(p)
    assert sum(alloc.values()) == TOTAL_SUPPLY


@pytest.mark.parametrize("bad", [
    {"alloc:a": 5_000, tk.RESERVE: 4_000},
    {"alloc:a": 10_000},
])
def test_bad_allocations_rejected(bad: dict[str, int]) -> None:
    with pytest.raises(InvalidInput):
        tk.EconomicParams(allocation_bps=bad, vesting={})
    with pytest.raises(InvalidInput):
        tk.EconomicParams(vesting={"alloc:nobody": tk.TEAM_VESTING})


def test_param_validation() -> None:
    with pytest.raises(InvalidInput):
        tk.EconomicParams(emission_decay_bps=0)
    with pytest.raises(InvalidInput):
        tk.EconomicParams(fee_bps=10_001)
    with pytest.raises(InvalidInput):
        tk.VestingSchedule(cliff=10, duration=5)


def test_vesting_cliff_then_linear() -> None:
    s = tk.TEAM_VESTING
    total = tk.allocations()["alloc:team"]
    assert tk.vested(total, 0, s) == 0
    assert tk.vested(total, s.cliff - 1, s) == 0
    assert tk.vested(total, s.cliff, s) == total // 4  # 12 of 48 months
    assert tk.vested(total, s.duration // 2, s) == total // 2
    assert tk.vested(total, s.duration, s) == total
    assert tk.vested(total, 10 * s.duration, s) == total


@given(st.integers(0, TOTAL_SUPPLY), st.integers(0, 10**9), st.integers(0, 10**9),
       st.integers(1, 10**9))
def test_vesting_monotone_and_bounded(total: int, t1: int, t2: int, dur: int) -> None:
    s = tk.VestingSchedule(cliff=min(t1, dur), duration=dur)
    a, b = sorted((t1, t2))
    assert 0 <= tk.vested(total, a, s) <= tk.vested(total, b, s) <= total


def test_vesting_release_postings() -> None:
    total = tk.allocations()["alloc:investors"]
    assert tk.vesting_release("alloc:investors", "inv", total, 0, 0) == ()
    (p,) = tk.vesting_release("alloc:investors", "inv", total, 0, tk.INVESTOR_VESTING.duration)
    assert (p.src, p.dst, p.amount) == ("alloc:investors", "wallet:inv", total)
    assert tk.releasable("alloc:investors", total, total, 10**10) == 0
    assert tk.releasable("alloc:community", 5, 0, 0) == 5  # not vested


def test_emission_declines_and_first_epochs() -> None:
    sched = tk.emission_schedule(200)
    assert sched[0] == 250_000 * BASE_UNITS_PER_NOS
    assert all(a >= b for a, b in itertools.pairwise(sched))
    assert sum(sched) == tk.reserve_amount() - tk.reserve_after(200)
    assert sched == [tk.epoch_release(k) for k in range(200)]


def test_emission_eventually_drains_reserve_exactly() -> None:
    p = tk.EconomicParams(emission_decay_bps=5_000)
    n = 60  # 2.5e13 halves to < 1 in ~45 epochs
    assert tk.reserve_after(n, p) == 0
    assert sum(tk.emission_schedule(n, p)) == tk.reserve_amount(p)


@given(st.integers(1, 10_000), st.integers(0, 400), st.integers(0, 10_000))
def test_emission_total_never_exceeds_reserve(decay: int, epochs: int, reserve_bps: int) -> None:
    rest = 10_000 - reserve_bps
    p = tk.EconomicParams(emission_decay_bps=decay,
                          allocation_bps={"alloc:community": rest, tk.RESERVE: reserve_bps},
                          vesting={})
    sched = tk.emission_schedule(epochs, p)
    assert all(x >= 0 for x in sched)
    assert sum(sched) <= tk.reserve_amount(p)


@given(
    st.integers(0, 300),
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 10**7), max_size=4),
    st.integers(0, 10**12),
    st.sampled_from([0, 1, 10_000, 10**6]),
)
def test_epoch_emission_pro_rata_within_budget(
    epoch: int, secs: dict[str, int], pool: int, cap: int
) -> None:
    p = tk.EconomicParams(max_reward_per_gpu_second=cap)
    e = tk.epoch_emission(epoch, secs, p, pool_balance=pool)
    total = sum(secs.values())
    paid = sum(e.paid.values())
    assert e.released == tk.epoch_release(epoch, p)
    assert e.kept == pool + e.released - paid >= 0
    if cap:
        assert paid <= cap * total
    for node, amount in e.paid.items():
        assert amount == min(pool + e.released, cap * total if cap else 10**30) \
            * secs[node] // total
    # the postings apply to a ledger where the reserve and pool hold what they should
    balances = {tk.RESERVE: tk.reserve_amount(p), REWARDS_POOL: pool, "genesis": -1}
    new = check_postings(balances, e.postings)
    assert new.get(REWARDS_POOL, pool) == e.kept


def test_epoch_emission_remainder_stays_and_empty_epoch() -> None:
    p = tk.EconomicParams(max_reward_per_gpu_second=0)
    e = tk.epoch_emission(0, {"a": 1, "b": 1, "c": 1}, p)
    assert sum(e.paid.values()) + e.kept == e.released
    assert e.kept == e.released % 3
    quiet = tk.epoch_emission(1, {}, p, pool_balance=7)
    assert quiet.paid == {} and quiet.kept == 7 + quiet.released
    with pytest.raises(InvalidInput):
        tk.epoch_emission(0, {"a": -1})


def test_epoch_at() -> None:
    assert tk.epoch_at(100, 100) == 0
    assert tk.epoch_at(100 + tk.EPOCH_SECONDS, 100) == 1
    with pytest.raises(InvalidInput):
        tk.epoch_at(0, 1)


@given(st.integers(0, 10**12), st.integers(0, 10_000), st.integers(0, 10_000))
def test_fee_split_matches_job_settle(gross_seconds: int, fee_bps: int, share: int) -> None:
    market = MarketParams(name="m", price_per_second=1, fee_bps=fee_bps,
                          stakers_share_bps=share, max_timeout=10**5)
    job = jobs.Job(id="j", client="c", market="m", spec_hash="h", timeout=10**5,
                   deposit=10**12, price_per_second=1, fee_bps=fee_bps,
                   stakers_share_bps=share, state=jobs.JobState.COMPLETED, node="n",
                   seconds_used=gross_seconds)
    assert market.fee_bps == fee_bps
    pay = jobs.payout(job)
    split = tk.fee_split(min(gross_seconds, 10**12), fee_bps, share)
    assert (split.node, split.treasury, split.stakers) == (
        pay.node_pay, pay.treasury_fee, pay.stakers_fee)
    assert split.node + split.treasury + split.stakers == min(gross_seconds, 10**12)


def test_genesis_from_our_allocation_replays() -> None:
    balances = replay([genesis_entry(tk.allocations(), at=0)])
    assert balances[tk.RESERVE] == tk.reserve_amount()


def test_allocation_table_rows() -> None:
    rows = {r["account"]: r for r in tk.allocation_table()}
    assert rows["alloc:team"]["cliff_months"] == 12
    assert rows["alloc:investors"]["vesting_months"] == 24
    assert rows[tk.RESERVE]["amount_nos"] == "25000000"
