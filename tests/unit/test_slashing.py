"""Slashing: the table, evidence, challenger split, jail, removal below the market minimum."""

from __future__ import annotations

import pytest

from nosgrid.core import slashing as sl
from nosgrid.core import staking as sk
from nosgrid.core.errors import InvalidInput
from nosgrid.core.markets import MarketParams
from nosgrid.core.money import BASE_UNITS_PER_NOS

NOS = BASE_UNITS_PER_NOS
HASH = "ab" * 32
EV = sl.Evidence(journal_hash=HASH, job_id="job-7")


def _staked(amount: int = 1_000 * NOS, days: int = 365) -> sk.StakeResult:
    return sk.stake(sk.RewardPool(), None, "n", amount, days, now=0)


@pytest.mark.parametrize(("offence", "price", "expected"), [
    (sl.Offence.WRONG_RESULT, 0, 500 * NOS),  # 50% of stake
    (sl.Offence.WRONG_RESULT, 80 * NOS, 800 * NOS),  # floor: 10 × price
    (sl.Offence.WRONG_RESULT, 500 * NOS, 1_000 * NOS),  # capped at the vault
    (sl.Offence.ABANDONED_JOB, 0, 20 * NOS),  # 2%
    (sl.Offence.ABANDONED_JOB, 30 * NOS, 30 * NOS),  # floor: 1 × price
    (sl.Offence.MISSED_DEADLINE, 0, 10 * NOS),  # 1%
    (sl.Offence.MISSED_HEARTBEATS, 10**6 * NOS, 5 * NOS),  # 0.5%, no floor
])
def test_slashing_table(offence: sl.Offence, price: int, expected: int) -> None:
    assert sl.slash_amount(1_000 * NOS, offence, price) == expected


def test_table_covers_every_offence_and_validates() -> None:
    assert set(sl.SLASHING_TABLE) == set(sl.Offence)
    with pytest.raises(InvalidInput):
        sl.SlashingParams(table={sl.Offence.WRONG_RESULT: sl.Penalty(1, 1, 1, 1)})
    with pytest.raises(InvalidInput):
        sl.Penalty(10_001, 0, 0, 1)


def test_wrong_result_split_and_score() -> None:
    r = _staked()
    cmd = sl.SlashNode("n", sl.Offence.WRONG_RESULT, EV, now=10, job_price=NOS,
                       challenger="auditor")
    s = sl.slash(r.pool, r.account, sl.OffenceHistory(), cmd)
    assert s.amount == 500 * NOS
    assert [(p.src, p.dst, p.amount) for p in s.postings] == [
        ("stake:n", "wallet:auditor", 250 * NOS), ("stake:n", "treasury", 250 * NOS)]
    assert s.account.amount == 500 * NOS
    assert s.account.score == 2_000 * NOS and s.pool.total_score == 2_000 * NOS
    names = [e.name for e in s.events]
    assert names == ["NodeSlashed", "NodeJailed"]
    assert s.events[0].evidence == HASH  # type: ignore[attr-defined]


def test_no_challenger_all_to_treasury() -> None:
    r = _staked()
    cmd = sl.SlashNode("n", sl.Offence.ABANDONED_JOB, sl.Evidence(job_id="j"), now=1)
    s = sl.slash(r.pool, r.account, sl.OffenceHistory(), cmd)
    assert [(p.dst, p.amount) for p in s.postings] == [("treasury", 20 * NOS)]


@pytest.mark.parametrize("evidence", [
    sl.Evidence(),
    sl.Evidence(journal_hash="not-a-hash"),
    sl.Evidence(journal_hash="AB" * 32),
])
def test_slash_without_evidence_rejected(evidence: sl.Evidence) -> None:
    r = _staked()
    with pytest.raises(sl.MissingEvidence):
        sl.slash(r.pool, r.account, sl.OffenceHistory(),
                 sl.SlashNode("n", sl.Offence.MISSED_HEARTBEATS, evidence, now=1))


def test_wrong_result_needs_audit_entry_and_job() -> None:
    r = _staked()
    for ev in (sl.Evidence(job_id="j"), sl.Evidence(journal_hash=HASH)):
        with pytest.raises(sl.MissingEvidence):
            sl.slash(r.pool, r.account, sl.OffenceHistory(),
                     sl.SlashNode("n", sl.Offence.WRONG_RESULT, ev, now=1))


def test_wrong_node_or_self_challenge_rejected() -> None:
    r = _staked()
    with pytest.raises(InvalidInput):
        sl.slash(r.pool, r.account, sl.OffenceHistory(),
                 sl.SlashNode("other", sl.Offence.MISSED_DEADLINE, EV, now=1))
    with pytest.raises(InvalidInput):
        sl.slash(r.pool, r.account, sl.OffenceHistory(),
                 sl.SlashNode("n", sl.Offence.WRONG_RESULT, EV, now=1, challenger="n"))


def test_empty_vault_still_records_offence() -> None:
    acct = sk.StakeAccount("n")
    s = sl.slash(sk.RewardPool(), acct, sl.OffenceHistory(),
                 sl.SlashNode("n", sl.Offence.MISSED_DEADLINE, EV, now=1))
    assert s.amount == 0 and s.postings == () and s.history.offences == 1


def test_slash_while_unlocking_takes_locked_part_first() -> None:
    r = _staked(100 * NOS, days=100)
    u = sk.unstake(r.pool, r.account, now=0)
    s = sl.slash(u.pool, u.account, sl.OffenceHistory(),
                 sl.SlashNode("n", sl.Offence.WRONG_RESULT, EV, now=1))
    assert s.account.amount == 50 * NOS and s.account.score == 0
    assert sk.withdrawable(s.account, 50 * sk.DAY) == 50 * NOS
    assert sk.withdrawable(s.account, 25 * sk.DAY) == 25 * NOS


def test_jail_after_repeated_offences_escalates() -> None:
    h = sl.OffenceHistory()
    h = sl.record_strikes(h, 1, now=0)
    h = sl.record_strikes(h, 1, now=sl.DAY)
    assert not h.jailed(sl.DAY + 1)
    h = sl.record_strikes(h, 1, now=2 * sl.DAY)
    assert h.jailed(2 * sl.DAY) and h.jailed_until == 9 * sl.DAY and h.jail_count == 1
    assert not h.jailed(9 * sl.DAY)
    # strikes outside the window do not count
    late = sl.record_strikes(sl.record_strikes(h, 1, now=20 * sl.DAY), 1, now=30 * sl.DAY)
    assert not late.jailed(30 * sl.DAY)
    # second jailing is twice as long; capped at the maximum
    for t in (40, 41, 42):
        h = sl.record_strikes(h, 1, now=t * sl.DAY)
    assert h.jailed_until == 42 * sl.DAY + 14 * sl.DAY
    long = sl.OffenceHistory(jail_count=10)
    long = sl.record_strikes(long, 3, now=0)
    assert long.jailed_until == 90 * sl.DAY


def test_removed_from_market_below_minimum() -> None:
    market = MarketParams(name="gpu", price_per_second=1, min_stake=600 * NOS)
    r = _staked()
    assert not sl.must_leave_market(r.account, market)
    assert sl.may_take_jobs(r.account, sl.OffenceHistory(), market, now=0)
    s = sl.slash(r.pool, r.account, sl.OffenceHistory(),
                 sl.SlashNode("n", sl.Offence.WRONG_RESULT, EV, now=1))
    assert sl.must_leave_market(s.account, market)
    assert not sl.may_take_jobs(s.account, s.history, market, now=2)
    assert sl.must_leave_market(None, market)
    # unstaking also removes the node; jail blocks jobs even with enough stake
    assert sl.must_leave_market(sk.unstake(r.pool, r.account, now=1).account, market)
    jailed = sl.OffenceHistory(jailed_until=100)
    assert not sl.may_take_jobs(r.account, jailed, market, now=50)
