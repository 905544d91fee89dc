"""The price oracle under a coordinated manipulation, on the real rule (``core.pricing``).

Each epoch the true price takes a random-walk step; every honest reporter (one operator
each) reports it with its own noise; a coalition of attacker operators reports what its
strategy says, knowing every honest report of the epoch (the worst case). The oracle
aggregates with standings and the move bound as the coordinator does. The figure is the
largest deviation of the oracle's price from the honest reports' median, in basis
points, how far it went towards the edge of the honest reports' range (1.0: at the
edge) and how often it left that range (the security argument says never); the baseline
is the same run without attackers.

>>> r = manipulation(OracleSimConfig(reporters=20, epochs=10, fractions=(0.3,)), seed=1)
>>> r["attack"]["0.3"]["epochs_outside_honest_range"]
0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from nosgrid.core.pricing import (
    DEFAULT_ORACLE,
    Observation,
    OracleParams,
    PricePoint,
    Standing,
    aggregate,
    update_standings,
)

#: what the coalition reports, knowing the honest reports (lo, hi) and the last price
STRATEGIES: Final = ("inflate_10x", "deflate_to_1", "honest_max", "just_above_range",
                     "creep_up", "alternate")
BPS: Final = 10_000


@dataclass(frozen=True, slots=True)
class OracleSimConfig:
    """The manipulation experiment: ``fractions`` of ``reporters`` collude for
    ``epochs``; prices in base units per second around ``start_price``."""

    reporters: int = 100
    epochs: int = 100
    fractions: tuple[float, ...] = (0.1, 0.3, 0.49)
    start_price: int = 1_000_000
    #: per-epoch volatility of the true price and each honest reporter's noise (bps)
    drift_bps: int = 50
    noise_bps: int = 100
    params: OracleParams = DEFAULT_ORACLE


def _attack(strategy: str, lo: int, hi: int, last: int | None, epoch: int) -> int:
    base = last if last is not None else (lo + hi) // 2
    if strategy == "inflate_10x":
        return hi * 10
    if strategy == "deflate_to_1":
        return 1
    if strategy == "honest_max":
        return hi
    if strategy == "just_above_range":
        return hi + 1
    if strategy == "creep_up":  # always the most the move bound could allow
        return base + base * 500 // BPS + 1
    return hi * 10 if epoch % 2 else 1  # alternate


def _run(cfg: OracleSimConfig, attackers: int, strategy: str | None, seed: int
         ) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    honest_n = cfg.reporters - attackers
    p, epoch_s = cfg.params, cfg.params.epoch_seconds
    true = float(cfg.start_price)
    last: PricePoint | None = None
    standings: dict[str, Standing] = {}
    worst, worst_at, outside, bounded, share = 0, -1, 0, 0, 0.0
    for e in range(1, cfg.epochs + 1):
        now = e * epoch_s
        true *= 1 + rng.normal(0, cfg.drift_bps / BPS)
        honest = [max(int(true * (1 + rng.normal(0, cfg.noise_bps / BPS))), 1)
                  for _ in range(honest_n)]
        lo, hi = min(honest), max(honest)
        obs = [Observation(f"h{i}", f"H{i}", "report", v, now) for i, v in enumerate(honest)]
        if strategy is not None:
            v = _attack(strategy, lo, hi, last.price if last else None, e)
            obs += [Observation(f"a{i}", f"A{i}", "report", v, now) for i in range(attackers)]
        agg = aggregate("sim", obs, epoch=e, now=now, previous=last, standings=standings,
                        params=p)
        assert agg.price is not None
        med = int(np.median(honest))
        dev = abs(agg.price - med) * BPS // med
        if dev > worst:
            worst, worst_at = dev, e
        # how far towards the honest range's edge (1.0: at the edge; the rule says ≤ 1)
        half = hi - med if agg.price >= med else med - lo
        share = max(share, abs(agg.price - med) / half if half else 0.0)
        outside += not lo <= agg.price <= hi
        bounded += agg.bounded
        standings.update(update_standings(agg, standings, p))
        last = PricePoint(e, agg.price)
    weights = [standings[f"A{i}"].weight_bps for i in range(attackers)] if strategy else []
    return {"max_deviation_bps": int(worst), "at_epoch": worst_at,
            "max_share_of_honest_half_range": round(share, 3),
            "epochs_outside_honest_range": outside, "epochs_held_by_move_bound": bounded,
            "attacker_weight_bps_end": int(np.median(weights)) if weights else None}


def manipulation(cfg: OracleSimConfig | None = None, seed: int = 2024
                 ) -> dict[str, Any]:
    """The experiment's figures (JSON-ready): per attacker fraction the worst strategy and
    its largest deviation from the honest median, every strategy's figures, and the
    honest-only baseline (the reporters' own disagreement)."""
    cfg = cfg or OracleSimConfig()
    base = _run(cfg, 0, None, seed)
    attack: dict[str, Any] = {}
    for f in cfg.fractions:
        k = round(cfg.reporters * f)
        runs = {s: _run(cfg, k, s, seed) for s in STRATEGIES}
        worst = max(runs, key=lambda s: runs[s]["max_deviation_bps"])
        attack[str(f)] = {"attackers": k, "honest": cfg.reporters - k, "worst_strategy": worst,
                          "max_deviation_bps": runs[worst]["max_deviation_bps"],
                          "max_share_of_honest_half_range": max(
                              r["max_share_of_honest_half_range"] for r in runs.values()),
                          "epochs_outside_honest_range": sum(
                              r["epochs_outside_honest_range"] for r in runs.values()),
                          "by_strategy": runs}
    return {"reporters": cfg.reporters, "epochs": cfg.epochs, "seed": seed,
            "noise_bps": cfg.noise_bps, "drift_bps": cfg.drift_bps,
            "max_move_bps": cfg.params.max_move_bps,
            "baseline_max_deviation_bps": base["max_deviation_bps"],
            "baseline_max_share_of_honest_half_range": base["max_share_of_honest_half_range"],
            "attack": attack}
