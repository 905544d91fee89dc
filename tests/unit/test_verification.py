"""Verification rules: audit rate, sampling, auditor choice, comparison, disputes, money."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nosgrid.core.audit_settlement import (
    AuditWindowOpen,
    hold_for_audit,
    release_held,
    settle_dispute,
)
from nosgrid.core.errors import IllegalTransition, InvalidInput
from nosgrid.core.jobs.state import Job, JobState
from nosgrid.core.ledger import balance_deltas, check_postings, escrow, wallet
from nosgrid.core.slashing import OffenceHistory, slash
from nosgrid.core.staking import RewardPool, stake
from nosgrid.core.verification import (
    AUDIT_POOL,
    DEFAULT_VERIFICATION,
    AuditRecord,
    Candidate,
    Tolerance,
    Verdict,
    VerificationParams,
    audit_draw,
    audit_rate_bps,
    audit_rates_bps,
    choose_auditor,
    choose_panel,
    compare_output_sets,
    compare_outputs,
    job_audit_rate_bps,
    related,
    resolve_dispute,
    should_audit,
)

BEACON = "5a" * 32
P = DEFAULT_VERIFICATION


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


# --------------------------------------------------------------------- audit rate


def test_newcomers_are_audited_most_and_established_nodes_at_the_floor() -> None:
    assert audit_rate_bps(AuditRecord(0, 0.5)) == P.newcomer_rate_bps
    assert audit_rate_bps(AuditRecord(P.probation_jobs, 0.5)) == P.newcomer_rate_bps
    assert audit_rate_bps(AuditRecord(100_000, 0.99)) == P.floor_rate_bps
    assert audit_rate_bps(AuditRecord(100_000, 0.1)) == P.newcomer_rate_bps  # low reputation


@given(st.integers(0, 10**7), st.integers(0, 10**7), st.floats(0.4, 1.0))
def test_rate_never_rises_with_a_longer_clean_record(a: int, b: int, rep: float) -> None:
    lo, hi = sorted((a, b))
    ra, rb = audit_rate_bps(AuditRecord(lo, rep)), audit_rate_bps(AuditRecord(hi, rep))
    assert P.floor_rate_bps <= rb <= ra <= P.newcomer_rate_bps


@given(st.lists(st.tuples(st.integers(0, 10**6), st.floats(0, 1)), max_size=50))
def test_vector_rate_equals_scalar_rule(records: list[tuple[int, float]]) -> None:
    clean = [c for c, _ in records]
    rep = [r for _, r in records]
    assert audit_rates_bps(clean, rep).tolist() == [
        audit_rate_bps(AuditRecord(c, r)) for c, r in records]


def test_rate_is_never_zero_and_params_are_checked() -> None:
    with pytest.raises(InvalidInput):
        VerificationParams(floor_rate_bps=0)
    with pytest.raises(InvalidInput):
        VerificationParams(floor_rate_bps=7_000, newcomer_rate_bps=6_000)
    assert job_audit_rate_bps("none", AuditRecord()) == 0
    assert job_audit_rate_bps("deterministic", AuditRecord(), replicas=3) == 0


# --------------------------------------------------------------------- sampling


def test_should_audit_is_recomputable_and_hits_its_rate() -> None:
    draws = [should_audit(f"job-{i}", BEACON, 1_000) for i in range(20_000)]
    assert draws == [should_audit(f"job-{i}", BEACON, 1_000) for i in range(20_000)]
    share = sum(draws) / len(draws)
    assert abs(share - 0.1) < 4.5 * (0.1 * 0.9 / 20_000) ** 0.5
    other = [should_audit(f"job-{i}", "00" * 32, 1_000) for i in range(200)]
    assert other != draws[:200]  # the beacon changes the draw


def test_should_audit_edges_and_bad_beacons() -> None:
    assert all(0 <= audit_draw(f"j{i}", BEACON) < 10_000 for i in range(100))
    assert should_audit("j", BEACON, 10_000) and not should_audit("j", BEACON, 0)
    with pytest.raises(InvalidInput):
        should_audit("j", "not-a-hash", 100)
    with pytest.raises(InvalidInput):
        should_audit("j", BEACON, 10_001)


# --------------------------------------------------------------------- auditors


def est(node: str, **kw: object) -> Candidate:
    base: dict[str, object] = {"clean_jobs": 1_000, "reputation": 0.9, "stake": 100}
    base.update(kw)
    return Candidate(node, **base)  # type: ignore[arg-type]


def test_auditor_exclusion_rules() -> None:
    audited = est("a", operator="opA", delegators=frozenset({"d1"}),
                  recent_partners=frozenset({"p"}))
    assert related(audited, est("b", operator="opA"))
    assert related(audited, est("b", delegators=frozenset({"d1", "d2"})))
    assert related(audited, est("p"))
    assert related(audited, est("b", recent_partners=frozenset({"a"})))
    assert not related(audited, est("b"))
    bad = [est("a"), est("b", operator="opA"), est("c", delegators=frozenset({"d1"})),
           est("p"), est("e", clean_jobs=10), est("f", reputation=0.3),
           est("g", available=False), est("h", stake=1)]
    for i in range(50):
        assert choose_auditor(f"j{i}", BEACON, audited, bad, min_stake=10) is None
    good = est("z")
    assert all(choose_auditor(f"j{i}", BEACON, audited, [*bad, good], min_stake=10) == good
               for i in range(50))


def test_auditor_choice_is_verifiable_and_order_free() -> None:
    cands = [est(f"n{i}") for i in range(30)]
    audited = cands[0]
    picks = [choose_auditor(f"j{i}", BEACON, audited, cands) for i in range(300)]
    shuffled = cands[:]
    random.Random(1).shuffle(shuffled)
    assert picks == [choose_auditor(f"j{i}", BEACON, audited, shuffled) for i in range(300)]
    names = {p.node_id for p in picks if p}
    assert "n0" not in names and len(names) > 20  # spread over the eligible nodes


def test_panel_is_independent_of_both_parties() -> None:
    cands = [est(f"n{i}", operator=f"op{i % 5}") for i in range(40)]
    audited, auditor = cands[0], cands[1]
    panel = choose_panel("j", BEACON, audited, auditor, cands)
    assert len(panel) == P.tiebreakers == len({c.node_id for c in panel})
    for c in panel:
        assert not related(c, audited) and not related(c, auditor)
        assert all(not related(c, o) for o in panel if o is not c)


# --------------------------------------------------------------------- comparison


def test_deterministic_compares_bytes() -> None:
    assert compare_outputs("deterministic", b"abc", b"abc").match
    assert not compare_outputs("deterministic", b"abc", b"abd").match
    assert not compare_outputs("deterministic", b"1.0", b"1.0000000001").match
    assert compare_outputs("none", b"a", b"b").match


def test_tolerance_json_and_npy() -> None:
    tol = Tolerance(abs_eps=1e-6, rel_eps=1e-4)
    a = json.dumps({"loss": 0.123456, "acc": [0.9, 0.8], "name": "x"}).encode()
    b = json.dumps({"loss": 0.123457, "acc": [0.9, 0.80001], "name": "x"}).encode()
    assert compare_outputs("tolerance", a, b, tol).match
    c = json.dumps({"loss": 0.2, "acc": [0.9, 0.8], "name": "x"}).encode()
    assert not compare_outputs("tolerance", a, c, tol).match
    d = json.dumps({"loss": 0.123456, "acc": [0.9, 0.8], "name": "y"}).encode()
    assert not compare_outputs("tolerance", a, d, tol).match
    assert not compare_outputs("tolerance", b"[1, 2]", b"[1, 2, 3]", tol).match
    assert not compare_outputs("tolerance", b"[true]", b"[1]", tol).match
    x = np.linspace(0, 1, 1_000, dtype=np.float32)
    assert compare_outputs("tolerance", npy(x), npy(x * np.float32(1 + 1e-6)), tol).match
    assert not compare_outputs("tolerance", npy(x), npy(x + 0.01), tol).match
    assert not compare_outputs("tolerance", npy(x), npy(x[:10]), tol).match
    assert not compare_outputs("tolerance", npy(x), b"[1]", tol).match
    nan = np.array([np.nan, 1.0, np.inf])
    assert compare_outputs("tolerance", npy(nan), npy(nan.copy()), tol).match
    assert not compare_outputs("tolerance", npy(nan), npy(-nan), tol).match
    assert not compare_outputs("tolerance", b"\x00\xff", b"\x00\xfe", tol).match
    assert compare_outputs("tolerance", b"\x00\xff", b"\x00\xff", tol).match


def test_honest_float_noise_never_mismatches_at_default_tolerance() -> None:
    """GPU reductions in a different order: float32 sums differ in the last bits."""
    rng = np.random.default_rng(0)
    tol = Tolerance.of(None, None)
    for _ in range(50):
        m = rng.normal(size=(64, 256)).astype(np.float32)
        order = rng.permutation(256)
        a = m.sum(axis=1, dtype=np.float32)
        b = m[:, order].sum(axis=1, dtype=np.float32)
        assert compare_outputs("tolerance", npy(a), npy(b), Tolerance(1e-5, 1e-5)).match
        assert compare_outputs("tolerance", npy(m), npy(m.copy()), tol).match


def test_output_sets() -> None:
    assert compare_output_sets("deterministic", {"a": b"1"}, {"a": b"1"}).match
    r = compare_output_sets("deterministic", {"a": b"1"}, {"a": b"2"})
    assert not r.match and r.reason.startswith("a:")


# --------------------------------------------------------------------- disputes


def test_resolve_dispute() -> None:
    d = "deterministic"
    assert resolve_dispute(d, b"x", b"x").verdict is Verdict.AGREED
    assert resolve_dispute(d, b"f", b"t", [b"t", b"t", b"t"]).verdict is Verdict.NODE_WRONG
    assert resolve_dispute(d, b"t", b"f", [b"t", b"t", b"t"]).verdict is Verdict.AUDITOR_WRONG
    assert resolve_dispute(d, b"t", b"f", b"t").verdict is Verdict.AUDITOR_WRONG
    out = resolve_dispute(d, b"f", b"t", [b"t", b"f", b"t"])
    assert out.verdict is Verdict.INCONCLUSIVE and (out.votes_first, out.votes_audit) == (1, 2)
    assert resolve_dispute(d, b"a", b"b", [b"c"] * 3).verdict is Verdict.INCONCLUSIVE
    with pytest.raises(InvalidInput):
        resolve_dispute(d, b"a", b"b", [])


# --------------------------------------------------------------------- money


def finished_job(state: JobState = JobState.COMPLETED) -> Job:
    return Job("j1", "client", "m", "h" * 64, timeout=100, deposit=10_000,
               price_per_second=80, fee_bps=500, stakers_share_bps=2_000, state=state,
               node="node", started_at=0, finished_at=100, seconds_used=100)


def test_hold_then_release_conserves_the_deposit() -> None:
    held = hold_for_audit(finished_job(), now=100)
    assert held.job.state is JobState.VERIFYING and not held.postings
    with pytest.raises(AuditWindowOpen):
        release_held(held.job, now=101, audit_fee_bps=1_200)
    out = release_held(held.job, now=100 + P.audit_window, audit_fee_bps=1_200)
    assert out.job.state is JobState.SETTLED
    deltas = balance_deltas(out.postings)
    assert -deltas[escrow("j1")] == 10_000
    assert deltas[AUDIT_POOL] == 8_000 * 1_200 // 10_000
    assert deltas[wallet("client")] == 2_000
    early = release_held(held.job, now=101, audit_fee_bps=1_200, audit_passed=True)
    assert early.postings == out.postings
    with pytest.raises(IllegalTransition):
        hold_for_audit(held.job, now=100)


def _disputed() -> Job:
    from nosgrid.core.audit_settlement import open_dispute

    return open_dispute(hold_for_audit(finished_job(), 100).job, 200, "aud").job


def test_node_wrong_refunds_client_pays_auditors_and_slashes_the_node() -> None:
    job = _disputed()
    out = resolve_dispute("deterministic", b"fake", b"true", [b"true"] * 3)
    s = settle_dispute(job, out, auditor="aud", tiebreakers=["t1", "t2", "t3"],
                       verdict_entry_hash="cd" * 32, now=300, audit_fee_bps=1_200,
                       pool_balance=20_000)
    deltas = balance_deltas(s.postings)
    assert deltas[wallet("client")] == 10_000 and deltas[escrow("j1")] == -10_000
    assert deltas[wallet("aud")] == 8_000 and deltas[AUDIT_POOL] == -20_000  # pool ran dry
    assert check_postings({escrow("j1"): 10_000, AUDIT_POOL: 20_000}, s.postings)
    (cmd,) = s.slashes
    assert cmd.node == "node" and cmd.challenger == "aud" and cmd.job_price == 8_000
    r = stake(RewardPool(), None, "node", 100_000_000, 30, now=0)
    res = slash(r.pool, r.account, OffenceHistory(), cmd)
    assert res.amount == 50_000_000 and res.history.jailed(301)


def test_auditor_wrong_and_inconclusive_pay_the_node() -> None:
    job = _disputed()
    aw = resolve_dispute("deterministic", b"true", b"lie", [b"true"] * 3)
    s = settle_dispute(job, aw, auditor="aud", tiebreakers=["t1", "t2", "t3"],
                       verdict_entry_hash="cd" * 32, now=300, audit_fee_bps=1_200,
                       pool_balance=10**9)
    deltas = balance_deltas(s.postings)
    assert wallet("aud") not in deltas and deltas[wallet("node")] > 0
    assert s.slashes[0].node == "aud" and s.slashes[0].challenger == "node"
    inc = resolve_dispute("deterministic", b"true", b"lie", [b"true", b"lie", b"true"])
    s2 = settle_dispute(job, inc, auditor="aud", tiebreakers=["t1", "t2", "t3"],
                        verdict_entry_hash="cd" * 32, now=300, audit_fee_bps=1_200,
                        pool_balance=10**9)
    assert not s2.slashes and balance_deltas(s2.postings)[wallet("node")] > 0
    assert s2.transition.job.state is JobState.SETTLED
    with pytest.raises(InvalidInput):
        settle_dispute(job, resolve_dispute("deterministic", b"a", b"a"), auditor="aud",
                       tiebreakers=[], verdict_entry_hash="cd" * 32, now=1,
                       audit_fee_bps=0, pool_balance=0)


@settings(max_examples=200)
@given(st.integers(0, 10**9), st.integers(1, 10**4), st.integers(0, 10_000),
       st.integers(0, 10_000), st.integers(0, 10_000))
def test_release_postings_never_exceed_the_deposit(deposit: int, secs: int, price: int,
                                                   fee: int, audit_fee: int) -> None:
    job = Job("j", "c", "m", "h", timeout=10**4, deposit=deposit, price_per_second=price,
              fee_bps=fee, state=JobState.VERIFYING, node="n", finished_at=0,
              started_at=0, seconds_used=secs)
    out = release_held(job, now=10**9, audit_fee_bps=audit_fee)
    assert sum(p.amount for p in out.postings) == deposit
    assert all(p.amount > 0 for p in out.postings)
