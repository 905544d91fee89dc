"""Reputation score (prior, decay, bounds) and the WeightedMatcher's shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nosgrid.core import reputation as rp
from nosgrid.core.errors import InvalidInput
from nosgrid.core.markets import FifoMatcher, Matcher, NodeCandidate
from nosgrid.core.money import BASE_UNITS_PER_NOS

NOS = BASE_UNITS_PER_NOS
DAY = rp.DAY


def test_new_node_is_neutral() -> None:
    assert rp.score(rp.NodeReputation(), now=0) == pytest.approx(0.5)


def test_good_and_bad_histories() -> None:
    good = bad = rp.NodeReputation()
    for t in range(20):
        good = rp.record_job(good, t, succeeded=True)
        good = rp.record_audit(good, t, passed=True)
        good = rp.record_heartbeats(good, t, received=10, expected=10)
        bad = rp.record_job(bad, t, succeeded=False, on_time=0.0)
        bad = rp.record_heartbeats(bad, t, received=2, expected=10)
    assert rp.score(good, 20) > 0.9
    assert rp.score(bad, 20) < 0.3


def test_one_failed_audit_weighs_more_than_a_pass() -> None:
    r = rp.NodeReputation()
    for t in range(5):
        r = rp.record_audit(r, t, passed=True)
    before = rp.score(r, 5)
    after = rp.score(rp.record_audit(r, 5, passed=False), 5)
    assert before > 0.59
    assert after <= 0.5 + 1e-6  # one failure undoes five passes (it counts 5×)


def test_decay_half_life() -> None:
    r = rp.record_job(rp.NodeReputation(), 0, succeeded=True)
    d = rp.decayed(r, rp.DEFAULT_REPUTATION.half_life)
    assert d.success_ok == pytest.approx(0.5)
    assert rp.decayed(r, -5) is r  # time never runs backwards
    # a bad past fades back toward the prior
    bad = rp.NodeReputation()
    for t in range(10):
        bad = rp.record_job(bad, t, succeeded=False)
    assert rp.score(bad, 10) < rp.score(bad, 10 + 90 * DAY) < 0.5


def test_timeliness() -> None:
    assert rp.timeliness(100, 100, 50) == 1.0
    assert rp.timeliness(125, 100, 50) == 0.5
    assert rp.timeliness(1_000, 100, 50) == 0.0


def test_param_validation() -> None:
    with pytest.raises(InvalidInput):
        rp.ReputationParams(w_success=0.9)
    with pytest.raises(InvalidInput):
        rp.ReputationParams(half_life=0)
    with pytest.raises(InvalidInput):
        rp.MatchingParams(exploration_bps=10_000)
    with pytest.raises(InvalidInput):
        rp.record_heartbeats(rp.NodeReputation(), 0, received=-1, expected=1)


_event = st.tuples(st.sampled_from(["job", "audit", "hb"]), st.integers(0, 10 * DAY),
                   st.booleans(), st.floats(-1, 2), st.integers(0, 100), st.integers(0, 100))


@given(st.lists(_event, max_size=30), st.integers(0, 400 * DAY))
def test_score_always_in_unit_interval(events: list[tuple[str, int, bool, float, int, int]],
                                       later: int) -> None:
    r = rp.NodeReputation()
    now = 0
    for kind, dt, ok, on_time, a, b in events:
        now += dt
        if kind == "job":
            r = rp.record_job(r, now, succeeded=ok, on_time=on_time)
        elif kind == "audit":
            r = rp.record_audit(r, now, passed=ok)
        else:
            r = rp.record_heartbeats(r, now, received=a, expected=b)
        assert 0.0 <= rp.score(r, now) <= 1.0
    assert 0.0 <= rp.score(r, now + later) <= 1.0


# ---------------------------------------------------------------- matcher


def _nodes() -> list[NodeCandidate]:
    out = [NodeCandidate(f"vet{i}", waiting_since=i, stake=(i + 1) ** 2 * 100 * NOS,
                         reputation=0.4 + 0.03 * i, jobs_done=100) for i in range(17)]
    out += [NodeCandidate(f"new{i}", waiting_since=100 + i, stake=100 * NOS, reputation=0.5,
                          jobs_done=i) for i in range(3)]
    out.append(NodeCandidate("poor", waiting_since=0, stake=0, reputation=0.0, jobs_done=50))
    return out


def test_matcher_is_a_matcher_and_reproducible() -> None:
    m: Matcher = rp.WeightedMatcher()
    cands = tuple(_nodes())
    assert m.pick(cands, 42) == m.pick(list(cands), 42) == rp.WeightedMatcher().pick(cands, 42)
    assert m.pick([], 1) is None
    assert FifoMatcher().pick(cands, 0) is not None


def test_matcher_shares_match_weights() -> None:
    """10,000 seeded picks: every node's share is within 4.5σ of its intended probability,
    newcomers together get at least the exploration share, and nobody is starved."""
    m = rp.WeightedMatcher()
    cands = tuple(_nodes())
    probs = m.probabilities(cands)
    assert probs.sum() == pytest.approx(1.0)
    n = 10_000
    counts: dict[str, int] = {}
    for seed in range(n):
        c = m.pick(cands, seed)
        assert c is not None
        counts[c.node_id] = counts.get(c.node_id, 0) + 1
    for c, p in zip(cands, probs, strict=True):
        share = counts.get(c.node_id, 0) / n
        assert abs(share - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-3, c.node_id
    new_share = sum(counts.get(f"new{i}", 0) for i in range(3)) / n
    assert new_share >= 0.1 - 4.5 * math.sqrt(0.09 / n)
    for i in range(3):
        assert probs[17 + i] >= 0.1 / 3
    # floor: even a zero-reputation, zero-stake node keeps >= 10% of the mean weight
    assert probs[-1] > 0 and counts.get("poor", 0) > 0
    # higher reputation × stake gets more
    assert probs[16] > probs[8] > probs[0]


def test_sqrt_blunts_whales() -> None:
    m = rp.WeightedMatcher(rp.MatchingParams(exploration_bps=0))
    whale = NodeCandidate("whale", 0, stake=10_000 * NOS, reputation=0.8, jobs_done=99)
    minnow = NodeCandidate("minnow", 0, stake=100 * NOS, reputation=0.8, jobs_done=99)
    p = m.probabilities([whale, minnow])
    assert p[0] / p[1] == pytest.approx(10.0)  # 100× the stake, 10× the work


def test_min_stake_gate_and_no_newcomers() -> None:
    m = rp.WeightedMatcher(rp.MatchingParams(min_stake=50 * NOS))
    below = NodeCandidate("below", 0, stake=49 * NOS, reputation=1.0, jobs_done=0)
    ok = NodeCandidate("ok", 0, stake=50 * NOS, reputation=0.1, jobs_done=99)
    assert list(m.probabilities([below, ok])) == [0.0, 1.0]
    assert all(m.pick([below, ok], s) == ok for s in range(50))
    assert m.pick([below], 3) is None


def test_all_zero_weights_fall_back_to_uniform() -> None:
    m = rp.WeightedMatcher(rp.MatchingParams(exploration_bps=0))
    cands = [NodeCandidate(str(i), 0, stake=0, reputation=0.0, jobs_done=99) for i in range(4)]
    assert np.allclose(m.probabilities(cands), 0.25)


def test_prepared_cache_only_for_same_tuple() -> None:
    m = rp.WeightedMatcher()
    t = tuple(_nodes())
    assert m.prepare(t) is m.prepare(t)
    lst = list(t)
    assert m.prepare(lst) is not m.prepare(lst)
    prepared = m.prepare(t)
    idx = prepared.pick_index(7)
    assert idx is not None and prepared.pick(7) == t[idx]


def test_without_drops_the_assigned_node() -> None:
    m = rp.WeightedMatcher()
    t = tuple(_nodes())
    prepared = m.prepare(t)
    i = prepared.pick_index(3)
    assert i is not None
    rest = prepared.without(i)
    probs = rest.probabilities
    assert probs[i] == 0 and probs.sum() == pytest.approx(1.0)
    assert all(rest.pick(s) != t[i] for s in range(300))
    # a round that assigns every node once never picks a node twice
    seen = set()
    pool = prepared
    for seed in range(len(t)):
        j = pool.pick_index(seed)
        assert j is not None
        seen.add(pool.candidates[j].node_id)
        pool = pool.without(j)
    assert len(seen) == len(t) and pool.pick(0) is None
