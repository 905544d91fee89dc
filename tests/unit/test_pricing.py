"""The price oracle's pure rules, adversarially: a minority of operators (whatever its
values, keys, weights or strategy over epochs) keeps the price inside the honest sources'
range and within the move bound; stale, duplicate and equivocating reports are handled
as ``core/pricing.py`` states."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nosgrid.core.errors import InvalidInput
from nosgrid.core.markets import MarketParams
from nosgrid.core.pricing import (
    DEFAULT_ORACLE,
    Observation,
    OracleParams,
    PricePoint,
    Report,
    Standing,
    aggregate,
    check_report,
    find_equivocations,
    move_band,
    quote,
    update_standings,
    usd_to_base_units,
)

P = DEFAULT_ORACLE
NOW = 10_000
HUGE = 10**15

# ------------------------------------------------------------------------------ strategies

#: what an attacker operator sends, given the honest range (lo, hi) and the last price
STRATEGIES = ("max", "min", "edge_high", "edge_low", "just_above", "random", "split",
              "last_price_push")


def attacker_values(strategy: str, lo: int, hi: int, last: int | None, i: int,
                    rnd: int) -> list[int]:
    """One attacker operator's values (several keys) for an epoch."""
    base = last if last is not None else (lo + hi) // 2
    match strategy:
        case "max":
            return [HUGE]
        case "min":
            return [1]
        case "edge_high":
            return [hi]
        case "edge_low":
            return [lo]
        case "just_above":
            return [hi + 1 + rnd % 1000]
        case "split":  # half the attackers pull down, half push up, with several keys
            return [1, 2] if i % 2 else [HUGE, HUGE - 1]
        case "last_price_push":  # stay near the last price and creep up (adaptive)
            return [base + base // 20 + 1]
        case "intermittent":  # absent every other epoch, extreme when present
            return [] if rnd % 2 else [HUGE]
        case _:
            return [1 + rnd % HUGE]


@st.composite
def epoch_inputs(draw: st.DrawFn) -> tuple[list[Observation], list[int], int]:
    """Honest operators (a strict majority), attacker operators with any strategy and
    several keys, arbitrary standings; returns (observations, honest values, n)."""
    lo = draw(st.integers(1, 10**9))
    width = draw(st.integers(0, 10**8))
    hi = lo + width
    n_att = draw(st.integers(0, 12))
    n_honest = draw(st.integers(n_att + 1, n_att + 6))
    honest = [draw(st.integers(lo, hi)) for _ in range(n_honest)]
    strategy = draw(st.sampled_from(STRATEGIES))
    obs: list[Observation] = []
    for i, v in enumerate(honest):
        kind = draw(st.sampled_from(["ask", "settled", "report"]))
        obs.append(Observation(f"h{i}", f"H{i}", kind, v, at=NOW - draw(st.integers(0, 60))))
    for i in range(n_att):
        for k, v in enumerate(attacker_values(strategy, lo, hi, None, i,
                                              draw(st.integers(0, 2**62)))):
            for kind in ("report", "ask"):
                obs.append(Observation(f"a{i}.{k}", f"A{i}", kind, v, at=NOW))
    return obs, honest, n_honest + n_att


weights = st.integers(P.min_weight_bps, 10_000)


@settings(max_examples=400)
@given(epoch_inputs(), st.data())
def test_a_minority_never_leaves_the_honest_range(inputs: tuple[list[Observation],
                                                               list[int], int],
                                                  data: st.DataObject) -> None:
    obs, honest, n = inputs
    operators = sorted({o.operator for o in obs})
    # the attacker may have earned full weight and the honest ones lost it, or anything
    standings = {op: Standing(op, data.draw(weights)) for op in operators}
    lo, hi = min(honest), max(honest)
    previous = data.draw(st.one_of(st.none(), st.integers(lo, hi)))
    prev = None if previous is None else PricePoint(0, previous)
    agg = aggregate("m", obs, epoch=1, now=NOW, previous=prev, standings=standings,
                    params=OracleParams(min_sources=1))
    assert agg.sources == n  # one operator counts once, however many keys and kinds
    assert agg.price is not None and lo <= agg.price <= hi
    assert agg.band is not None and lo <= agg.band[0] <= agg.band[1] <= hi
    if prev is not None:
        b_lo, b_hi = move_band(prev.price, 1, P.max_move_bps)
        assert b_lo <= agg.price <= b_hi


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 10**8), st.integers(0, 10**6), st.integers(1, 10),
       st.sampled_from((*STRATEGIES, "intermittent")), st.integers(10, 60),
       st.randoms(use_true_random=False))
def test_over_many_epochs_an_adaptive_minority_stays_inside(
        lo: int, width: int, n_att: int, strategy: str, epochs: int, rnd: object) -> None:
    """Epoch after epoch, standings updated, the attacker adapting to the last price:
    every published price is in the honest range and moves at most the bound."""
    import random

    assert isinstance(rnd, random.Random)
    hi = lo + width
    n_honest = n_att + 1 + rnd.randrange(3)
    standings: dict[str, Standing] = {}
    last: PricePoint | None = None
    params = OracleParams(min_sources=3)
    for e in range(1, epochs + 1):
        now = e * params.epoch_seconds
        obs = [Observation(f"h{i}", f"H{i}", "report", rnd.randint(lo, hi), now)
               for i in range(n_honest)]
        for i in range(n_att):
            for k, v in enumerate(attacker_values(strategy, lo, hi, last and last.price, i,
                                                  rnd.getrandbits(62))):
                obs.append(Observation(f"a{i}.{k}", f"A{i}", "report", v, now))
        agg = aggregate("m", obs, epoch=e, now=now, previous=last, standings=standings,
                        params=params)
        if agg.price is None:  # too few sources this epoch (the attackers stayed away)
            assert agg.sources < params.min_sources
            continue
        assert lo <= agg.price <= hi
        if last is not None:
            b_lo, b_hi = move_band(last.price, e - last.epoch, params.max_move_bps)
            assert b_lo <= agg.price <= b_hi
        standings.update(update_standings(agg, standings, params))
        last = PricePoint(e, agg.price)
    # an attacker that kept deviating lost weight (it cannot gain it back by deviating)
    if strategy in ("max", "min", "split") and width < lo // 1000:
        assert all(standings[f"A{i}"].weight_bps <= P.initial_weight_bps
                   for i in range(n_att))


def test_half_of_the_operators_is_not_a_minority() -> None:
    """With exactly half, the upper median may be the attacker's: the bound is tight."""
    obs = [Observation(f"k{i}", f"o{i}", "report", v, NOW)
           for i, v in enumerate([100, 100, 10**6, 10**6])]
    agg = aggregate("m", obs, epoch=1, now=NOW, params=OracleParams(min_sources=1))
    assert agg.band == (100, 10**6)


def test_the_move_bound_holds_a_jump_back() -> None:
    obs = [Observation(f"k{i}", f"o{i}", "report", 2000, NOW) for i in range(3)]
    agg = aggregate("m", obs, epoch=5, now=NOW, previous=PricePoint(4, 1000))
    assert agg.price == 1050 and agg.bounded and "move bound" in agg.reason
    two = aggregate("m", obs, epoch=6, now=NOW, previous=PricePoint(4, 1000))
    assert two.price == 1102  # compounded over the gap
    far = aggregate("m", obs, epoch=4 + P.max_gap_epochs + 1, now=NOW,
                    previous=PricePoint(4, 1000))
    assert far.price == 2000 and not far.bounded  # too long without a price: no anchor


# ------------------------------------------------------------------------------ stale


def test_stale_and_future_observations_are_dropped() -> None:
    obs = [Observation("a", "A", "report", 100, NOW - P.max_age_report_s),  # just fresh
           Observation("b", "B", "report", 100, NOW - P.max_age_report_s - 1),  # stale
           Observation("c", "C", "ask", 100, NOW - P.max_age_ask_s - 1),  # stale
           Observation("d", "D", "settled", 100, NOW - P.max_age_settled_s),  # fresh
           Observation("e", "E", "report", 100, NOW + 1),  # from the future
           Observation("f", "F", "report", 0, NOW)]  # no price
    agg = aggregate("m", obs, epoch=1, now=NOW)
    assert agg.stale == 4 and agg.sources == 2 and agg.price is None
    assert agg.reason == "2 fresh independent sources, 3 needed"


def test_too_few_sources_falls_back_to_the_configured_price_visibly() -> None:
    agg = aggregate("m", [Observation("a", "A", "report", 5, NOW)], epoch=1, now=NOW)
    q = quote(MarketParams(name="m", price_per_second=7), agg, None)
    assert (q.source, q.reference, q.charged) == ("configured", 7, 7)
    assert q.reason.startswith("too few sources: 1 fresh independent source, 3 needed")


# ------------------------------------------------------------------------------ duplicates


def test_duplicates_count_once_latest_report_and_lower_median_of_settled() -> None:
    obs = [Observation("a", "A", "report", 100, NOW - 50),
           Observation("a", "A", "report", 200, NOW - 10),  # the latest report counts
           Observation("b", "B", "settled", 10, NOW - 5),
           Observation("b", "B", "settled", 300, NOW - 4),
           Observation("b", "B", "settled", 30, NOW - 3),  # the lower median: 30
           Observation("c", "C", "ask", 40, NOW)]
    agg = aggregate("m", obs, epoch=1, now=NOW)
    values = {o.operator: o.value for o in agg.operators}
    assert values == {"A": 200, "B": 30, "C": 40} and agg.duplicates == 3


def test_one_operator_counts_once_however_many_keys() -> None:
    obs = [Observation(f"k{i}", "SYBIL", "report", 10**9, NOW) for i in range(50)]
    obs += [Observation(f"h{i}", f"H{i}", "report", 100 + i, NOW) for i in range(2)]
    agg = aggregate("m", obs, epoch=1, now=NOW)
    assert agg.sources == 3 and agg.price in (100, 101)


def test_a_duplicate_report_repeats_the_first() -> None:
    a = Report("k", "op", "m", 5, 100, 3000, "a" * 64)
    assert check_report([], a).status == "new"
    dup = check_report([a], replace(a, hash="b" * 64, at=3001))
    assert dup.status == "duplicate" and dup.same_as == a
    other_epoch = check_report([a], replace(a, epoch=6, price=7, hash="c" * 64))
    assert other_epoch.status == "new"  # another epoch is a new report


# ------------------------------------------------------------------------------ equivocation


def test_equivocation_excludes_the_operator_and_drops_its_standing() -> None:
    r1 = Report("k", "op", "m", 1, 100, NOW - 20, "1" * 64)
    r2 = Report("k2", "op", "m", 1, 100, NOW - 20, "2" * 64)
    r3 = Report("k2", "op", "m", 1, 900, NOW - 10, "3" * 64)  # op's second key equivocates
    check = check_report([r2], r3)
    assert check.status == "equivocation" and check.finding is not None
    assert check.finding.evidence == ("2" * 64, "3" * 64)
    assert check_report([r2, r3], replace(r3, hash="4" * 64)).status == "equivocated"
    honest = [Observation(f"h{i}", f"H{i}", "report", 500, NOW) for i in range(3)]
    reports = [r1, r2, r3]
    agg = aggregate("m", [*honest, *(r.observation() for r in reports)], epoch=1, now=NOW,
                    reports=reports)
    assert [f.operator for f in agg.equivocations] == ["op"]
    assert agg.sources == 3 and agg.price == 500  # the whole operator is out
    standings = update_standings(agg, {"op": Standing("op", 10_000)})
    assert standings["op"].weight_bps == P.min_weight_bps


def test_find_equivocations_names_the_two_first_conflicting_reports() -> None:
    rs = [Report("k", "op", "m", 1, p, at, h * 64)
          for p, at, h in ((100, 1, "a"), (100, 2, "b"), (150, 3, "c"), (175, 4, "d"))]
    [found] = find_equivocations(rs)
    assert found.evidence == ("a" * 64, "c" * 64) and found.prices == (100, 150)
    assert find_equivocations(rs[:2]) == ()


# ------------------------------------------------------------------------------ standings


def test_a_repeated_outlier_decays_and_an_honest_source_recovers() -> None:
    standings: dict[str, Standing] = {}
    for e in range(1, 12):
        obs = [Observation(f"h{i}", f"H{i}", "report", 1000, NOW) for i in range(3)]
        obs.append(Observation("x", "X", "report", 10**6, NOW))
        agg = aggregate("m", obs, epoch=e, now=NOW, standings=standings)
        standings.update(update_standings(agg, standings))
        again = update_standings(agg, standings)  # once per epoch
        assert all(s == standings[s.operator] for s in again.values()) or not again
    assert standings["X"].weight_bps == P.min_weight_bps and standings["X"].deviations == 11
    assert standings["H0"].weight_bps == 10_000


# ------------------------------------------------------------------------------ USD and params


def test_usd_price_converts_up_at_the_rate() -> None:
    m = MarketParams(name="gpu", price_per_second=300, price_usd_micros_per_second=100)
    rate = aggregate("nos_usd", [Observation(f"k{i}", f"o{i}", "report", 250_000, NOW)
                                 for i in range(3)], epoch=1, now=NOW)
    q = quote(m, None, rate)
    assert (q.charged, q.nos_usd_rate, q.source) == (400, 250_000, "configured")
    assert usd_to_base_units(1, 3_000_000) == 1  # never below the USD price
    with pytest.raises(InvalidInput):
        usd_to_base_units(1, 0)


@pytest.mark.parametrize("bad", [{"min_sources": 0}, {"mad_multiple_bps": 9_999},
                                 {"max_move_bps": 0}, {"penalty_bps": 10_001},
                                 {"max_age_ask_s": -1}])
def test_bad_params_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(InvalidInput):
        OracleParams(**bad)
