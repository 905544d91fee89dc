"""Agent-based market: honest, cheating, lazy, colluding and sybil nodes under the real rules.

Jobs arrive in rounds; each round assigns a batch by the weighted matcher's
probabilities, draws fakes and timeouts per strategy, samples audits at the real
adaptive rate, picks auditors with the exclusion rule, resolves disputes with a
panel, slashes with the real table and updates reputation — all on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from nosgrid.core.money import BASE_UNITS_PER_NOS
from nosgrid.core.reputation import DEFAULT_REPUTATION, MatchingParams
from nosgrid.core.slashing import DEFAULT_SLASHING, Offence
from nosgrid.core.verification import (
    DEFAULT_VERIFICATION,
    Tolerance,
    VerificationParams,
    audit_rates_bps,
    within_tolerance,
)
from nosgrid.sim.rules import (
    IntArray,
    ReputationArrays,
    challenger_shares,
    matcher_probabilities,
    related_mask,
    slash_amounts,
)

NOS = BASE_UNITS_PER_NOS


class Kind(IntEnum):
    HONEST = 0
    CHEATER = 1
    LAZY = 2
    RING = 3
    SYBIL = 4


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """Population, strategies and money of one market run."""

    nodes: int = 1_000
    jobs: int = 100_000
    batch: int = 0  # jobs per round; 0 = nodes // 2
    round_seconds: int = 600
    cheaters: float = 0.02
    cheater_fake_rates: tuple[float, ...] = (0.01, 0.05, 0.2, 1.0)
    lazy: float = 0.02
    lazy_rate: float = 0.1
    ring_share: float = 0.04
    ring_size: int = 10
    ring_fake_rate: float = 0.2
    sybils: float = 0.02
    sybil_fake_rate: float = 0.2
    newcomers: float = 0.01  # honest nodes that join with no record
    established_jobs: tuple[int, int] = (1_000, 10_000)
    job_price: int = 1 * NOS
    fee_bps: int = 500
    compute_cost_bps: int = 6_000  # of the job price
    min_stake: int = 100 * NOS
    tolerance_share: float = 0.3
    honest_noise_rel: float = 1e-7  # float nondeterminism of honest tolerance runs
    canary_share: float = 0.0  # share of checks done as known-answer canaries
    canary_reuse: int = 20  # how many nodes one canary's precomputed answer serves
    partners_kept: int = 4
    verification: VerificationParams = field(default_factory=lambda: DEFAULT_VERIFICATION)


@dataclass
class _Nodes:
    kind: IntArray
    fake: np.ndarray[Any, np.dtype[np.float64]]
    ring: IntArray
    operator: IntArray
    vault: IntArray
    clean: IntArray
    jobs_done: IntArray
    jailed_until: np.ndarray[Any, np.dtype[np.float64]]
    active: np.ndarray[Any, np.dtype[np.bool_]]
    partners: IntArray
    money: np.ndarray[Any, np.dtype[np.float64]]  # net base units vs start
    honest_equiv: np.ndarray[Any, np.dtype[np.float64]]  # what honest work would have paid
    first_slash_job: IntArray
    strikes: IntArray
    sim_jobs: IntArray


def _population(cfg: MarketConfig, rng: np.random.Generator) -> _Nodes:
    n = cfg.nodes
    counts = {Kind.CHEATER: round(n * cfg.cheaters), Kind.LAZY: round(n * cfg.lazy),
              Kind.RING: round(n * cfg.ring_share) // cfg.ring_size * cfg.ring_size,
              Kind.SYBIL: round(n * cfg.sybils)}
    kind = np.zeros(n, dtype=np.int64)
    pos = 0
    for k, c in counts.items():
        kind[pos:pos + c] = k
        pos += c
    fake = np.zeros(n)
    cheat = np.flatnonzero(kind == Kind.CHEATER)
    fake[cheat] = np.resize(np.array(cfg.cheater_fake_rates), len(cheat))
    fake[kind == Kind.RING] = cfg.ring_fake_rate
    fake[kind == Kind.SYBIL] = cfg.sybil_fake_rate
    ring = np.full(n, -1, dtype=np.int64)
    ring_idx = np.flatnonzero(kind == Kind.RING)
    ring[ring_idx] = np.arange(len(ring_idx)) // cfg.ring_size
    lo, hi = cfg.established_jobs
    clean = rng.integers(lo, hi, n).astype(np.int64)
    fresh = kind == Kind.SYBIL
    fresh[cheat[::2]] = True  # half the cheaters are newcomers
    honest = np.flatnonzero(kind == Kind.HONEST)
    fresh[honest[: round(n * cfg.newcomers)]] = True
    clean[fresh] = 0
    stake = np.exp(rng.normal(np.log(1_000), 1.0, n)) * NOS
    vault = np.maximum(stake.astype(np.int64), cfg.min_stake)
    vault[kind == Kind.SYBIL] = cfg.min_stake
    vault[cheat] = cfg.min_stake
    return _Nodes(kind=kind, fake=fake, ring=ring, operator=np.arange(n, dtype=np.int64),
                  vault=vault, clean=clean, jobs_done=np.where(fresh, 0, clean),
                  jailed_until=np.zeros(n), active=np.ones(n, dtype=bool),
                  partners=np.full((n, cfg.partners_kept), -1, dtype=np.int64),
                  money=np.zeros(n), honest_equiv=np.zeros(n),
                  first_slash_job=np.full(n, -1, dtype=np.int64),
                  strikes=np.zeros(n, dtype=np.int64), sim_jobs=np.zeros(n, dtype=np.int64))


def run_market(cfg: MarketConfig, seed: int) -> dict[str, Any]:
    """Run one market; returns overhead, false slashes and profit per strategy (NOS)."""
    rng = np.random.default_rng(seed)
    vp = cfg.verification
    nd = _population(cfg, rng)
    n = cfg.nodes
    rep = ReputationArrays(n, DEFAULT_REPUTATION)
    seeded = nd.clean.astype(np.float64)
    for f, share in (("success_ok", 0.05), ("timely_ok", 0.05), ("uptime_ok", 0.05),
                     ("audit_ok", 0.01)):
        rep.add(f, np.arange(n), np.minimum(seeded * share, 60.0))
    matching = MatchingParams(min_stake=cfg.min_stake)
    slash_p = DEFAULT_SLASHING
    price = cfg.job_price
    fee = price * cfg.fee_bps // 10_000
    audit_fee = price * vp.audit_fee_bps // 10_000
    node_pay = price - fee - audit_fee
    cost = price * cfg.compute_cost_bps // 10_000
    tol = Tolerance.of(None, None, vp)
    batch = cfg.batch or max(cfg.nodes // 2, 1)
    jail_rounds = slash_p.jail_seconds / cfg.round_seconds
    stats = dict.fromkeys(("jobs_compute", "audit_runs", "tiebreak_runs", "canary_runs",
                           "canary_precompute", "audits", "disputes", "vouched",
                           "inconclusive", "honest_false_slashes", "honest_tolerance_mismatch",
                           "pool_income", "pool_paid", "timeouts"), 0.0)
    done = 0
    rnd = 0
    while done < cfg.jobs:
        b = min(batch, cfg.jobs - done)
        now = rnd * cfg.round_seconds
        rep.decay_to(now)
        score = rep.score()
        eligible = nd.active & (nd.jailed_until <= rnd) & (nd.vault >= cfg.min_stake)
        probs = matcher_probabilities(nd.vault, score, nd.jobs_done, eligible, matching)
        if probs.sum() <= 0:
            break
        node = rng.choice(n, size=b, p=probs / probs.sum())
        kind = nd.kind[node]
        u = rng.random((6, b))
        timeout = (kind == Kind.LAZY) & (u[0] < cfg.lazy_rate)
        fake = ~timeout & (u[1] < nd.fake[node])
        ok = ~timeout
        rates = audit_rates_bps(nd.clean[node], score[node], vp)
        audited = ok & (u[2] * 10_000 < rates)
        canary = audited & (u[3] < cfg.canary_share)
        rerun = audited & ~canary
        stats["jobs_compute"] += b
        stats["timeouts"] += int(timeout.sum())
        stats["pool_income"] += audit_fee * int(ok.sum())
        stats["canary_runs"] += int(canary.sum())
        stats["canary_precompute"] += int(canary.sum()) / cfg.canary_reuse
        # ---- auditors: uniform over the eligible pool, redrawn while related
        pool = np.flatnonzero(eligible & (nd.clean >= vp.auditor_min_clean_jobs)
                              & (score >= vp.auditor_min_reputation))
        ai = np.flatnonzero(rerun)
        aud = np.full(len(ai), -1, dtype=np.int64)
        if len(pool) and len(ai):
            todo = np.arange(len(ai))
            for _ in range(8):
                pick = pool[rng.integers(0, len(pool), len(todo))]
                bad = related_mask(node[ai[todo]], pick, nd.operator, nd.partners)
                aud[todo[~bad]] = pick[~bad]
                todo = todo[bad]
                if not len(todo):
                    break
        has = aud >= 0
        ai, aud = ai[has], aud[has]
        first = node[ai]
        stats["audits"] += len(ai) + int(canary.sum())
        stats["audit_runs"] += len(ai)
        # ---- what each side returns: truth, a fake, or a ring mate's vouch
        same_ring = (nd.ring[first] >= 0) & (nd.ring[first] == nd.ring[aud])
        first_lies = fake[ai]
        vouch = first_lies & same_ring
        aud_lies = ~same_ring & (rng.random(len(ai)) < nd.fake[aud])
        noise_mismatch = np.zeros(len(ai), dtype=bool)
        tol_jobs = rng.random(len(ai)) < cfg.tolerance_share
        honest_pair = tol_jobs & ~first_lies & ~aud_lies
        if honest_pair.any():
            m = int(honest_pair.sum())
            a_out = 1.0 + rng.normal(0.0, cfg.honest_noise_rel, m)
            b_out = 1.0 + rng.normal(0.0, cfg.honest_noise_rel, m)
            noise_mismatch[honest_pair] = ~within_tolerance(a_out, b_out, tol)
        stats["honest_tolerance_mismatch"] += int(noise_mismatch.sum())
        dispute = ((first_lies ^ aud_lies) & ~vouch) | noise_mismatch
        stats["vouched"] += int(vouch.sum())
        # honest auditors and vouchers are paid for the run; honest ones also compute it
        nd.money[aud] += price - np.where(vouch | aud_lies, 0, cost)
        nd.honest_equiv[aud] += price - cost
        stats["pool_paid"] += price * len(ai)
        # ---- panel for disputes
        di = np.flatnonzero(dispute)
        stats["disputes"] += len(di)
        verdict_first_wrong = np.zeros(len(ai), dtype=bool)
        verdict_aud_wrong = np.zeros(len(ai), dtype=bool)
        inconclusive = np.zeros(len(ai), dtype=bool)
        if len(di) and len(pool):
            t = vp.tiebreakers
            panel = pool[rng.integers(0, len(pool), (len(di), t))]
            stats["tiebreak_runs"] += panel.size
            stats["pool_paid"] += price * panel.size
            liar = np.where(first_lies[di], first[di], aud[di])
            for_liar = (nd.ring[panel] >= 0) & (nd.ring[panel] == nd.ring[liar][:, None])
            garbage = ~for_liar & (rng.random(panel.shape) < nd.fake[panel])
            for_truth = ~for_liar & ~garbage
            nd.money[panel] += price - np.where(for_liar | garbage, 0, cost)
            nd.honest_equiv[panel] += price - cost
            noise = noise_mismatch[di]
            truth_wins = for_truth.all(axis=1) & ~noise
            liar_wins = for_liar.all(axis=1) & ~noise
            fw = np.where(first_lies[di], truth_wins, liar_wins)
            aw = np.where(first_lies[di], liar_wins, truth_wins)
            verdict_first_wrong[di] = fw
            verdict_aud_wrong[di] = aw
            inconclusive[di] = ~fw & ~aw
        stats["inconclusive"] += int(inconclusive.sum())
        # canaries: checked against the known answer, nobody can vouch
        caught = np.zeros(b, dtype=bool)
        caught[ai[verdict_first_wrong]] = True
        caught |= canary & fake
        # ---- pay the jobs: refunds for timeouts and caught fakes
        paid = ok & ~caught
        np.add.at(nd.money, node, np.where(paid, node_pay, 0)
                  - np.where(paid & ~fake, cost, 0))
        np.add.at(nd.honest_equiv, node, np.full(b, node_pay - cost, dtype=np.float64))
        # ---- slashes (real amounts), jail, leaving the market
        offenders = [(node[caught], np.full(int(caught.sum()), -1), Offence.WRONG_RESULT),
                     (aud[verdict_aud_wrong], first[verdict_aud_wrong], Offence.WRONG_RESULT),
                     (node[timeout], np.full(int(timeout.sum()), -1), Offence.MISSED_DEADLINE)]
        for who, challenger, offence in offenders:
            if not len(who):
                continue
            who, first_idx = np.unique(who, return_index=True)
            challenger = challenger[first_idx]
            amt = slash_amounts(nd.vault[who], offence, price, slash_p)
            if offence is Offence.WRONG_RESULT:
                stats["honest_false_slashes"] += int((nd.kind[who] == Kind.HONEST).sum())
            nd.vault[who] -= amt
            nd.money[who] -= amt
            has_ch = challenger >= 0
            nd.money[challenger[has_ch]] += challenger_shares(amt[has_ch], offence, slash_p)
            nd.first_slash_job[who] = np.where(nd.first_slash_job[who] < 0,
                                               nd.sim_jobs[who] + 1, nd.first_slash_job[who])
            nd.strikes[who] += slash_p.table[offence].strikes
            jail = nd.strikes[who] >= slash_p.jail_strikes
            nd.jailed_until[who[jail]] = rnd + jail_rounds
            nd.strikes[who[jail]] = 0
            nd.clean[who] = 0
            rep.add("audit_bad" if offence is Offence.WRONG_RESULT else "timely_bad", who,
                    DEFAULT_REPUTATION.audit_failure_weight
                    if offence is Offence.WRONG_RESULT else 1.0)
            nd.active[who] &= nd.vault[who] >= cfg.min_stake
        nd.clean[aud[inconclusive]] = 0
        nd.clean[first[inconclusive]] = 0
        # ---- records, reputation, co-assignment memory
        np.add.at(nd.jobs_done, node, 1)
        np.add.at(nd.sim_jobs, node, 1)
        good = ok & ~caught
        np.add.at(nd.clean, node[good], 1)
        rep.add("success_ok", node[ok], 1.0)
        rep.add("timely_ok", node[ok], 1.0)
        rep.add("success_bad", node[timeout], 1.0)
        rep.add("uptime_ok", node, 1.0)
        passed = ~dispute
        rep.add("audit_ok", first[passed], 1.0)
        slot = nd.jobs_done[first] % cfg.partners_kept
        nd.partners[first, slot] = aud
        nd.partners[aud, nd.jobs_done[aud] % cfg.partners_kept] = first
        done += b
        rnd += 1
    return _summary(cfg, nd, stats, node_pay, cost)


def _summary(cfg: MarketConfig, nd: _Nodes, stats: dict[str, float], node_pay: int,
             cost: int) -> dict[str, Any]:
    checks = (stats["audit_runs"] + stats["tiebreak_runs"] + stats["canary_runs"]
              + stats["canary_precompute"])
    strategies: dict[str, Any] = {}
    for k in Kind:
        m = nd.kind == k
        if not m.any():
            continue
        gain = (nd.money[m] - nd.honest_equiv[m]) / NOS
        slashed = nd.first_slash_job[m] >= 0
        strategies[k.name.lower()] = {
            "nodes": int(m.sum()),
            "mean_net_nos": round(float(nd.money[m].mean()) / NOS, 4),
            "mean_gain_vs_honest_nos": round(float(gain.mean()), 4),
            "slashed_share": round(float(slashed.mean()), 4),
            "mean_jobs_until_slash": (round(float(nd.first_slash_job[m][slashed].mean()), 1)
                                      if slashed.any() else None),
            "jobs_per_node": round(float(nd.sim_jobs[m].mean()), 2),
            "still_in_market": round(float(nd.active[m].mean()), 4),
        }
    honest = nd.kind == Kind.HONEST
    return {
        "nodes": cfg.nodes, "jobs": int(stats["jobs_compute"]),
        "audit_overhead": round(checks / (stats["jobs_compute"] + checks), 5),
        "audit_share_of_jobs": round(stats["audits"] / max(stats["jobs_compute"], 1), 5),
        "disputes": int(stats["disputes"]), "vouched": int(stats["vouched"]),
        "inconclusive": int(stats["inconclusive"]),
        "timeouts": int(stats["timeouts"]),
        "honest_false_slashes": int(stats["honest_false_slashes"]),
        "honest_tolerance_mismatches": int(stats["honest_tolerance_mismatch"]),
        "honest_mean_earnings_nos": round(float(nd.money[honest].mean()) / NOS, 4),
        "honest_earnings_per_job_nos": round(node_pay / NOS - cost / NOS, 6),
        "audit_pool_balance_nos": round((stats["pool_income"] - stats["pool_paid"]) / NOS, 2),
        "canary_share": cfg.canary_share,
        "strategies": strategies,
    }
