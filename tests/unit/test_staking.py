"""Staking rules: multiplier, lock range, linear unlock, commands, accumulator vs naive loop."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core import staking as sk
from nosgrid.core.errors import InvalidInput, StakeLocked
from nosgrid.core.money import BASE_UNITS_PER_NOS, TOTAL_SUPPLY

NOS = BASE_UNITS_PER_NOS
DAY = sk.DAY


def test_multiplier_values() -> None:
    assert sk.multiplier_bps(14) == 11_150  # 1.115×, Nosana: 1 + 14/121.67 = 1.1151
    assert sk.multiplier_bps(365) == 40_000  # exactly 4×
    assert sk.multiplier_bps(180) == 24_794
    for days in range(14, 366):
        nosana = 1 + days / 121.67
        assert abs(sk.multiplier_bps(days) / 10_000 - nosana) < 0.0005


@pytest.mark.parametrize("days", [0, 13, 366, -1, 10_000])
def test_lock_out_of_range(days: int) -> None:
    with pytest.raises(sk.LockOutOfRange):
        sk.multiplier_bps(days)
    with pytest.raises(sk.LockOutOfRange):
        sk.stake(sk.RewardPool(), None, "a", NOS, days, now=0)


def test_lock_must_be_int() -> None:
    with pytest.raises(sk.LockOutOfRange):
        sk.check_lock(14.5)  # type: ignore[arg-type]
    with pytest.raises(sk.LockOutOfRange):
        sk.check_lock(True)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [0, -5, NOS - 1, TOTAL_SUPPLY + 1])
def test_amount_out_of_range(amount: int) -> None:
    with pytest.raises(sk.StakeAmountOutOfRange):
        sk.stake(sk.RewardPool(), None, "a", amount, 30, now=0)


def test_stake_postings_and_score() -> None:
    r = sk.stake(sk.RewardPool(), None, "a", 10 * NOS, 14, now=5)
    assert r.account.score == 11_150_000
    assert r.pool.total_score == r.account.score
    assert [(p.src, p.dst, p.amount) for p in r.postings] == [("wallet:a", "stake:a", 10 * NOS)]
    assert r.events[0].name == "Staked"
    assert r.account.market_stake == 10 * NOS
    with pytest.raises(sk.StakeStateError):
        sk.stake(r.pool, r.account, "a", NOS, 14, now=6)


def test_linear_unlock_and_withdraw() -> None:
    r = sk.stake(sk.RewardPool(), None, "a", 100 * NOS, 100, now=0)
    with pytest.raises(StakeLocked):
        sk.withdraw(r.pool, r.account, now=10)  # not unstaked
    u = sk.unstake(r.pool, r.account, now=1_000)
    assert u.account.score == 0 and u.pool.total_score == 0
    assert u.account.market_stake == 0
    with pytest.raises(StakeLocked):
        sk.withdraw(u.pool, u.account, now=1_000)  # nothing unlocked yet
    assert sk.withdrawable(u.account, 1_000 + 25 * DAY) == 25 * NOS
    w = sk.withdraw(u.pool, u.account, now=1_000 + 25 * DAY)
    assert [(p.src, p.dst, p.amount) for p in w.postings] == [("stake:a", "wallet:a", 25 * NOS)]
    assert w.account.amount == 75 * NOS
    with pytest.raises(StakeLocked):
        sk.withdraw(w.pool, w.account, now=1_000 + 25 * DAY)  # nothing new
    w2 = sk.withdraw(w.pool, w.account, now=1_000 + 50 * DAY)
    assert w2.postings[0].amount == 25 * NOS
    w3 = sk.withdraw(w2.pool, w2.account, now=10**9)
    assert w3.postings[0].amount == 50 * NOS and w3.account.amount == 0
    # the account can stake again once emptied
    again = sk.stake(w3.pool, w3.account, "a", NOS, 14, now=10**9)
    assert again.account.active


def test_unstake_twice_restake_topup_extend() -> None:
    r = sk.stake(sk.RewardPool(), None, "a", 10 * NOS, 14, now=0)
    t = sk.top_up(r.pool, r.account, 10 * NOS, now=1)
    assert t.account.amount == 20 * NOS and t.account.score == 22_300_000
    e = sk.extend(t.pool, t.account, 365, now=2)
    assert e.account.score == 80 * NOS and e.pool.total_score == 80 * NOS
    with pytest.raises(sk.LockOutOfRange):
        sk.extend(e.pool, e.account, 200, now=3)  # shorter
    u = sk.unstake(e.pool, e.account, now=4)
    with pytest.raises(sk.StakeStateError):
        sk.unstake(u.pool, u.account, now=5)
    with pytest.raises(sk.StakeStateError):
        sk.top_up(u.pool, u.account, NOS, now=5)
    with pytest.raises(sk.StakeStateError):
        sk.extend(u.pool, u.account, 365, now=5)
    back = sk.restake(u.pool, u.account, now=6)
    assert back.account.active and back.account.score == 80 * NOS
    with pytest.raises(sk.StakeStateError):
        sk.restake(back.pool, back.account, now=7)
    with pytest.raises(sk.StakeAmountOutOfRange):
        sk.top_up(back.pool, back.account, TOTAL_SUPPLY, now=7)


def test_claims_and_nothing_to_claim() -> None:
    pool = sk.RewardPool()
    with pytest.raises(sk.StakeNotFound):
        sk.claim_rewards(pool, None, now=0)
    a = sk.stake(pool, None, "a", 10 * NOS, 365, now=0)
    with pytest.raises(sk.NothingToClaim):
        sk.claim_rewards(a.pool, a.account, now=1)
    b = sk.stake(a.pool, None, "b", 30 * NOS, 365, now=0)
    pool = sk.distribute_fees(b.pool, 1_000, now=1).pool
    ca = sk.claim_rewards(pool, a.account, now=2)
    assert [(p.src, p.dst, p.amount) for p in ca.postings] == [("stakers_pool", "wallet:a", 250)]
    assert sk.pending_rewards(ca.pool, b.account) == 750
    # rewards earned before an unstake are kept; none accrue after
    u = sk.unstake(ca.pool, b.account, now=3)
    pool = sk.distribute_fees(u.pool, 1_000, now=4).pool
    assert sk.pending_rewards(pool, u.account) == 750
    assert sk.pending_rewards(pool, ca.account) == 1_000


def test_fees_without_stakers_wait() -> None:
    pool = sk.distribute_fees(sk.RewardPool(), 500, now=0).pool
    a = sk.stake(pool, None, "a", NOS, 14, now=1)
    pool = sk.distribute_fees(a.pool, 0, now=2).pool
    # floor rounding: the last base unit may stay in the pool as dust, never overpaid
    assert sk.pending_rewards(pool, a.account) in (499, 500)
    with pytest.raises(InvalidInput):
        sk.distribute_fees(pool, -1, now=0)


def test_handle_dispatch_and_owner_check() -> None:
    r = sk.handle(sk.RewardPool(), None, sk.Stake("a", NOS, 30, now=0))
    r = sk.handle(r.pool, r.account, sk.TopUp("a", NOS, now=1))
    r = sk.handle(r.pool, r.account, sk.Extend("a", 60, now=2))
    r = sk.handle(r.pool, r.account, sk.Unstake("a", now=3))
    r = sk.handle(r.pool, r.account, sk.Restake("a", now=4))
    r = sk.handle(r.pool, r.account, sk.Unstake("a", now=5))
    r = sk.handle(r.pool, r.account, sk.Withdraw("a", now=5 + 60 * DAY))
    assert r.account.amount == 0
    with pytest.raises(sk.NothingToClaim):
        sk.handle(r.pool, r.account, sk.ClaimRewards("a", now=6))
    with pytest.raises(InvalidInput):
        sk.handle(r.pool, r.account, sk.Unstake("b", now=6))


def test_reduce_stake_follows_score() -> None:
    r = sk.stake(sk.RewardPool(), None, "a", 10 * NOS, 365, now=0)
    pool, acct = sk.reduce_stake(r.pool, r.account, 5 * NOS)
    assert acct.amount == 5 * NOS and acct.score == 20 * NOS and pool.total_score == 20 * NOS
    with pytest.raises(InvalidInput):
        sk.reduce_stake(pool, acct, 6 * NOS)


# ---------------------------------------------------------------- accumulator vs naive

OWNERS = ["s0", "s1", "s2", "s3", "s4"]
_op = st.one_of(
    st.tuples(st.just("fee"), st.integers(0, 10**9)),
    st.tuples(st.just("stake"), st.sampled_from(OWNERS), st.integers(1, 10**9),
              st.integers(14, 365)),
    st.tuples(st.just("unstake"), st.sampled_from(OWNERS)),
    st.tuples(st.just("claim"), st.sampled_from(OWNERS)),
)


@given(st.lists(_op, max_size=40))
def test_accumulator_matches_naive_loop(ops: list[tuple[object, ...]]) -> None:
    """Naive: every fee is shared among all stakers by exact fractions s_i·F/T (fees
    arriving with nobody staking wait for the next event), and a staker is owed the floor
    of its exact total. The accumulator is within 1 base unit of that for every staker,
    and never owes more in total than was paid in."""
    params = sk.StakingParams(min_amount=1)
    pool = sk.RewardPool()
    accts: dict[str, sk.StakeAccount] = {}
    exact: dict[str, Fraction] = dict.fromkeys(OWNERS, Fraction(0))
    claimed: dict[str, int] = dict.fromkeys(OWNERS, 0)
    waiting = 0
    funded = 0
    for op in ops:
        kind = op[0]
        if kind == "fee":
            amount = int(op[1])  # type: ignore[call-overload]
            funded += amount
            pool = sk.distribute_fees(pool, amount, now=0).pool
            scores = {o: a.score for o, a in accts.items() if a.score}
            total = sum(scores.values())
            if total == 0:
                waiting += amount
            else:
                for o, s in scores.items():
                    exact[o] += Fraction((amount + waiting) * s, total)
                waiting = 0
            continue
        owner = str(op[1])
        acct = accts.get(owner)
        if kind == "stake" and (acct is None or acct.amount == 0):
            r = sk.stake(pool, acct, owner, int(op[2]), int(op[3]), 0,  # type: ignore[call-overload]
                         params)
        elif kind == "unstake" and acct is not None and acct.active:
            r = sk.unstake(pool, acct, 0)
        elif kind == "claim" and acct is not None and sk.pending_rewards(pool, acct):
            r = sk.claim_rewards(pool, acct, 0)
            claimed[owner] += r.postings[0].amount
        else:
            continue
        pool, accts[owner] = r.pool, r.account
    owed_total = 0
    for o in OWNERS:
        acct = accts.get(o)
        got = claimed[o] + (sk.pending_rewards(pool, acct) if acct else 0)
        naive = exact[o].numerator // exact[o].denominator
        assert abs(got - naive) <= 1, (o, got, exact[o])
        owed_total += got
    assert owed_total <= funded
    assert pool.total_funded == funded
    assert funded - owed_total - pool.undistributed <= len(OWNERS) + 1
