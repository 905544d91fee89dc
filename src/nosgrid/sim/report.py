"""Run every experiment at the given settings and gather the figures into one report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nosgrid.core.verification import DEFAULT_VERIFICATION, VerificationParams
from nosgrid.sim.experiments import Economy, detection, detection_curve, profit_table
from nosgrid.sim.inference import InferenceSimConfig, model_swap
from nosgrid.sim.market import NOS, MarketConfig, run_market
from nosgrid.sim.oracle import OracleSimConfig, manipulation


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything ``nosgrid sim`` varies; the defaults are the published figures."""

    seed: int = 2024
    runs: int = 1_000
    fake_rates: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    ring_sizes: tuple[int, ...] = (2, 10, 50, 100)  # ≤ 10% of market.nodes
    horizon: int = 2_000  # jobs per profit run
    profit_runs: int = 400
    market: MarketConfig = field(default_factory=MarketConfig)
    canary_share: float = 0.5
    #: the price oracle's manipulation experiment (``sim/oracle.py``)
    oracle: OracleSimConfig = field(default_factory=OracleSimConfig)
    #: the model-swap strategy against inference audits (``sim/inference.py``)
    inference: InferenceSimConfig = field(default_factory=InferenceSimConfig)

    @property
    def verification(self) -> VerificationParams:
        return self.market.verification


def _economy(cfg: MarketConfig) -> Economy:
    v = cfg.verification
    price = cfg.job_price
    pay = price - price * cfg.fee_bps // 10_000 - price * v.audit_fee_bps // 10_000
    return Economy(price, pay, price * cfg.compute_cost_bps // 10_000, cfg.min_stake)


def run_all(cfg: SimConfig) -> dict[str, Any]:
    """All figures as one JSON-ready dict (money in NOS, shares in [0, 1])."""
    rng = np.random.default_rng(cfg.seed)
    vp = cfg.verification
    established = cfg.market.established_jobs[0] * 2
    det = {}
    for p in cfg.fake_rates:
        new = detection(rng, p, 0, 200, cfg.runs, vp)
        old = detection(rng, p, established, 1_000, cfg.runs, vp, reputation=0.9)
        det[str(p)] = {"newcomer_within_200": new.caught_within,
                       "newcomer_mean_jobs_until_slash": round(new.mean_jobs_until_slash, 1),
                       "established_within_1000": old.caught_within,
                       "established_mean_jobs_until_slash": round(old.mean_jobs_until_slash, 1)}
    fresh_1000 = detection(rng, 0.05, 0, 1_000, cfg.runs, vp).caught_within
    econ = _economy(cfg.market)
    rows = profit_table(rng, cfg.fake_rates, (1, *cfg.ring_sizes), cfg.market.nodes,
                        (0, established), cfg.horizon, cfg.profit_runs, econ, vp)
    profits: list[dict[str, Any]] = [{"fake_rate": r.fake_rate, "ring_size": r.ring_size,
                "start": "established" if i % (2 * len(cfg.fake_rates)) >= len(cfg.fake_rates)
                else "newcomer",
                "expected_profit_nos": round(r.mean_profit / NOS, 4),
                "slashed_share": round(r.slashed_share, 4), "mean_jobs": round(r.mean_jobs, 1)}
               for i, r in enumerate(rows)]
    single = [float(r["expected_profit_nos"]) for r in profits if r["ring_size"] == 1]
    rings = [float(r["expected_profit_nos"]) for r in profits if r["ring_size"] > 1]
    est_cfg = replace(cfg.market, cheaters=0.0, lazy=0.0, ring_share=0.0, sybils=0.0)
    m_est = run_market(est_cfg, cfg.seed)
    m_adv = run_market(cfg.market, cfg.seed + 1)
    m_can = run_market(replace(cfg.market, canary_share=cfg.canary_share), cfg.seed + 1)
    m_est_can = run_market(replace(est_cfg, canary_share=cfg.canary_share), cfg.seed)
    d5 = det["0.05"] if "0.05" in det else next(iter(det.values()))
    swap = model_swap(replace(cfg.inference, slash=cfg.market.min_stake), cfg.seed)
    return {
        "seed": cfg.seed,
        "runs": cfg.runs,
        "caught_5pct_within_1000": d5["established_within_1000"],
        "caught_5pct_newcomer_within_200": d5["newcomer_within_200"],
        "caught_5pct_fresh_within_1000": fresh_1000,
        "jobs_until_slash_5pct": {"newcomer": d5["newcomer_mean_jobs_until_slash"],
                                  "established": d5["established_mean_jobs_until_slash"]},
        "detection_by_fake_rate": det,
        "audit_overhead": m_est["audit_overhead"],
        "audit_overhead_adversarial": m_adv["audit_overhead"],
        "max_cheater_profit_nos": max(single),
        "max_ring_profit_nos": max(rings) if rings else None,
        "max_model_swap_profit_nos": swap["max_model_swap_profit_nos"],
        "inference_audit_overhead_tokens": swap["inference_audit_overhead_tokens"],
        "model_swap": swap,
        "honest_false_slashes": sum(m["honest_false_slashes"]
                                    for m in (m_est, m_adv, m_can, m_est_can)),
        "honest_earnings_per_job_nos": m_est["honest_earnings_per_job_nos"],
        "honest_mean_earnings_nos": m_est["honest_mean_earnings_nos"],
        "canaries": {
            "share_of_checks": cfg.canary_share,
            "overhead_established": m_est_can["audit_overhead"],
            "overhead_adversarial": m_can["audit_overhead"],
            "ring_vouches_without": m_adv["vouched"], "ring_vouches_with": m_can["vouched"],
            "ring_gain_vs_honest_nos_without": m_adv["strategies"].get("ring", {}).get(
                "mean_gain_vs_honest_nos"),
            "ring_gain_vs_honest_nos_with": m_can["strategies"].get("ring", {}).get(
                "mean_gain_vs_honest_nos"),
        },
        "profit_of_faking": profits,
        "market_established": m_est,
        "market_adversarial": m_adv,
        "economy_nos": {"job_price": econ.job_price / NOS, "node_pay": econ.node_pay / NOS,
                        "compute_cost": econ.compute_cost / NOS,
                        "min_stake": econ.min_stake / NOS},
        "verification_params": asdict(vp),
        "oracle_manipulation": manipulation(cfg.oracle, cfg.seed),
    }


def plot(report: dict[str, Any], path: Path, params: VerificationParams = DEFAULT_VERIFICATION
         ) -> None:
    """Detection curves, audit rate by record, and the profit of faking (PNG).

    Needs the optional ``plot`` extra (matplotlib); raises ImportError naming it otherwise.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'nosgrid[plot]'",
                          name=exc.name) from exc

    from nosgrid.core.verification import audit_rates_bps

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    for p in (0.01, 0.05, 0.2):
        ax.plot(np.arange(1, 1_001), detection_curve(p, 0, 1_000, params),
                label=f"newcomer, fakes {p:.0%}")
        ax.plot(np.arange(1, 1_001), detection_curve(p, 5_000, 1_000, params, 0.9), "--",
                label=f"established, fakes {p:.0%}")
    ax.axhline(0.99, color="grey", lw=0.5)
    ax.set(xlabel="jobs", ylabel="P(slashed)", title="Catching a faker")
    ax.legend(fontsize=7)
    jobs = np.arange(0, 1_001)
    axes[1].plot(jobs, audit_rates_bps(jobs, np.full(len(jobs), 0.9), params) / 100)
    axes[1].set(xlabel="clean jobs in the record", ylabel="audit rate (%)",
                title="Adaptive audit rate")
    ax = axes[2]
    for k in sorted({r["ring_size"] for r in report["profit_of_faking"]}):
        for start in ("newcomer", "established"):
            rows = [r for r in report["profit_of_faking"]
                    if r["ring_size"] == k and r["start"] == start]
            ax.plot([r["fake_rate"] for r in rows], [r["expected_profit_nos"] for r in rows],
                    marker="o", ls="-" if start == "newcomer" else "--",
                    label=f"{'alone' if k == 1 else f'ring of {k}'}, {start}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(xscale="log", xlabel="fake rate p", ylabel="expected profit of faking (NOS)",
           title="Faking does not pay")
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
