"""Focused Monte-Carlo experiments: time to catch a faker, and the profit of faking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nosgrid.core.slashing import DEFAULT_SLASHING, Offence, SlashingParams
from nosgrid.core.verification import DEFAULT_VERIFICATION, VerificationParams, audit_rates_bps
from nosgrid.sim.rules import FloatArray, IntArray, challenger_shares, slash_amounts


@dataclass(frozen=True, slots=True)
class Economy:
    """Per-job money of the experiments, in base units."""

    job_price: int  # gross billed per job
    node_pay: int  # what the node keeps (gross − fee − audit fee)
    compute_cost: int  # what running a job honestly costs the node
    min_stake: int


@dataclass(frozen=True, slots=True)
class Detection:
    caught_within: float  # share of runs slashed within ``jobs``
    mean_jobs_until_slash: float
    median_jobs_until_slash: float


def detection(rng: np.random.Generator, fake_rate: float, start_clean: int, jobs: int,
              runs: int, params: VerificationParams = DEFAULT_VERIFICATION,
              reputation: float = 0.5, horizon: int = 20_000) -> Detection:
    """A lone faker in an honest market: every audited fake ends in a unanimous panel.

    The audit rate of job ``j`` is the real ``audit_rates_bps`` of the node's record
    (clean jobs grow by one per job until it is caught).
    """
    first = np.full(runs, horizon, dtype=np.int64)
    alive = np.ones(runs, dtype=bool)
    start = 0
    chunk = max(jobs, 1_000)
    while start < horizon and alive.any():
        n = min(chunk, horizon - start)
        rates = audit_rates_bps(start_clean + start + np.arange(n), np.full(n, reputation),
                                params) / 10_000
        idx = np.flatnonzero(alive)
        fake = rng.random((len(idx), n)) < fake_rate
        audited = rng.random((len(idx), n)) < rates[None, :]
        hit = fake & audited
        any_hit = hit.any(axis=1)
        first[idx[any_hit]] = start + hit[any_hit].argmax(axis=1) + 1
        alive[idx[any_hit]] = False
        start += n
    caught = first < horizon
    within = float(np.mean(first <= jobs))
    times = first[caught]
    return Detection(within, float(times.mean()) if len(times) else float("inf"),
                     float(np.median(times)) if len(times) else float("inf"))


@dataclass(frozen=True, slots=True)
class Profit:
    fake_rate: float
    ring_size: int
    mean_profit: float  # base units per member vs the honest counterfactual, same jobs
    slashed_share: float
    mean_jobs: float


def faking_profit(rng: np.random.Generator, fake_rate: float, ring_size: int,
                  market_nodes: int, start_clean: int, horizon: int, runs: int,
                  econ: Economy, params: VerificationParams = DEFAULT_VERIFICATION,
                  slashing: SlashingParams = DEFAULT_SLASHING) -> Profit:
    """Expected gain of faking over honesty for one member of a ring (1 = alone).

    Per job while in the market: a fake saves the compute cost; an audit picks a ring
    mate (who vouches) with probability ``(k−1)/(n−1)``; otherwise each of the panel's
    tiebreakers is a ring mate with probability ``(k−2)/(n−2)``: a whole-ring panel
    slashes the honest auditor (the ring earns the challenger share), a mixed panel is
    inconclusive (the record resets), an honest panel slashes the faker (real slash
    amount) and refunds the client. Leaving the market is not counted as a loss, so the
    figure flatters the cheater.
    """
    n = max(market_nodes, ring_size + params.tiebreakers + 2)
    p_vouch = (ring_size - 1) / (n - 1)
    p_panel_mate = max(ring_size - 2, 0) / (n - 2)
    clean = np.full(runs, start_clean, dtype=np.int64)
    vault = np.full(runs, econ.min_stake, dtype=np.int64)
    active = np.ones(runs, dtype=bool)
    gain = np.zeros(runs)
    jobs_done = np.zeros(runs, dtype=np.int64)
    slashed = np.zeros(runs, dtype=bool)
    rep = np.full(runs, 0.9)
    honest_auditor_vault = econ.min_stake * 10  # a typical established honest stake
    price = econ.job_price
    for _ in range(horizon):
        if not active.any():
            break
        q = audit_rates_bps(clean, rep, params) / 10_000
        u = rng.random((4, runs))
        fake = active & (u[0] < fake_rate)
        audited = fake & (u[1] < q)
        vouched = audited & (u[2] < p_vouch)
        panel_mates = rng.binomial(params.tiebreakers, p_panel_mate, runs)
        disputed = audited & ~vouched
        framed = disputed & (panel_mates == params.tiebreakers)
        convicted = disputed & (panel_mates == 0)
        inconclusive = disputed & ~framed & ~convicted
        jobs_done += active
        gain += np.where(fake, econ.compute_cost, 0.0)
        # a vouching mate is paid for an audit run it did not do: the ring saves compute
        gain += np.where(vouched, econ.compute_cost, 0.0)
        aud_slash = int(slash_amounts(np.array([honest_auditor_vault]), Offence.WRONG_RESULT,
                                      price, slashing)[0])
        gain += np.where(framed, float(challenger_shares(np.array([aud_slash]),
                                                         Offence.WRONG_RESULT, slashing)[0]),
                         0.0)
        s = slash_amounts(vault, Offence.WRONG_RESULT, price, slashing)
        gain -= np.where(convicted, s + econ.node_pay, 0)
        vault = np.where(convicted, vault - s, vault)
        slashed |= convicted
        clean = np.where(convicted | inconclusive, 0, clean + active)
        active &= ~(convicted & (vault < econ.min_stake))
    return Profit(fake_rate, ring_size, float(gain.mean()), float(slashed.mean()),
                  float(jobs_done.mean()))


def profit_table(rng: np.random.Generator, fake_rates: tuple[float, ...],
                 ring_sizes: tuple[int, ...], market_nodes: int, starts: tuple[int, ...],
                 horizon: int, runs: int, econ: Economy,
                 params: VerificationParams = DEFAULT_VERIFICATION) -> list[Profit]:
    """:func:`faking_profit` over every fake rate, ring size and starting record."""
    out = []
    for k in ring_sizes:
        for start in starts:
            for p in fake_rates:
                out.append(faking_profit(rng, p, k, market_nodes, start, horizon, runs,
                                         econ, params))
    return out


def detection_curve(fake_rate: float, start_clean: int, jobs: int,
                    params: VerificationParams = DEFAULT_VERIFICATION,
                    reputation: float = 0.5) -> FloatArray:
    """Exact P(slashed by job j), j = 1..jobs, for a lone faker (for the chart)."""
    rates: IntArray = audit_rates_bps(start_clean + np.arange(jobs), np.full(jobs, reputation),
                                      params)
    out: FloatArray = 1.0 - np.exp(np.cumsum(np.log1p(-fake_rate * rates / 10_000)))
    return out
