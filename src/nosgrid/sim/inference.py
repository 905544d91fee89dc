"""The model-swap strategy: a node that serves a cheaper engine (a requantized model) under
the deployed model's name, against the real inference audit rate and the detection rate
``bench/inference_audit.py`` measured.

Each run is one node serving ``requests`` gateway requests, starting as a newcomer or as
an established node (its (node, model digest) record already past probation). On each
request it swaps with probability ``swap_rate`` and saves ``saving_bps`` of its compute
cost; the request is audited at :func:`~nosgrid.core.verification.inference.\
inference_audit_rate_bps` of its clean audited requests, and an audited swapped request is
caught with probability ``detection``. A caught node refunds that request's price and is
slashed ``slash`` (its stake; then jailed: it serves no more). The profit reported is
against serving the same requests honestly, so an honest node's is 0.

>>> r = model_swap(InferenceSimConfig(runs=50, requests=2_000), seed=1)
>>> r["max_model_swap_profit_nos"] < 0
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from nosgrid.core.verification.inference import (
    DEFAULT_INFERENCE_AUDIT,
    InferenceAuditParams,
    model_swap_profit,
)
from nosgrid.core.verification.sampling import audit_rates_bps

NOS: Final = 1_000_000
#: detection per audited request of a Q4_1 → Q4_0 requantized SmolLM2, measured by
#: ``bench/inference_audit.py`` (docs/verification.md, "Inference audits")
MEASURED_SWAP_DETECTION: Final = 1.0


@dataclass(frozen=True, slots=True)
class InferenceSimConfig:
    runs: int = 200
    requests: int = 10_000
    #: what a request is billed (base units): ~100 tokens at the default prices
    price: int = 200
    compute_cost_bps: int = 6_000  # of the price, as jobs
    saving_bps: int = 5_000  # of the compute cost: a cheaper quantization
    slash: int = 100 * NOS  # the market's minimum stake
    detection: float = MEASURED_SWAP_DETECTION
    swap_rates: tuple[float, ...] = (0.01, 0.1, 0.5, 1.0)
    #: replayed tokens per served token of an audited request (bench: 1.0)
    replay_ratio: float = 1.0
    params: InferenceAuditParams = DEFAULT_INFERENCE_AUDIT


def _run(cfg: InferenceSimConfig, swap_rate: float, start_clean: int,
         rng: np.random.Generator) -> dict[str, float]:
    p = cfg.params
    curve = p.curve()
    saving = cfg.price * cfg.compute_cost_bps / 10_000 * cfg.saving_bps / 10_000
    clean = np.full(cfg.runs, start_clean, dtype=np.int64)
    alive = np.ones(cfg.runs, dtype=bool)
    gain = np.zeros(cfg.runs)
    audited = np.zeros(cfg.runs)
    served = np.zeros(cfg.runs)
    for _ in range(cfg.requests):
        if not alive.any():
            break
        rate = audit_rates_bps(clean, np.full(cfg.runs, 0.5), curve) / 10_000
        swap = alive & (rng.random(cfg.runs) < swap_rate)
        audit = alive & (rng.random(cfg.runs) < rate)
        caught = audit & swap & (rng.random(cfg.runs) < cfg.detection)
        gain += np.where(swap & ~caught, saving, 0.0)
        gain -= np.where(caught, cfg.price + cfg.slash, 0.0)
        served += alive
        audited += audit
        clean = np.where(audit & ~caught, clean + 1, np.where(caught, 0, clean))
        alive &= ~caught
    return {"mean_profit": float(gain.mean()), "caught_share": float((~alive).mean()),
            "audit_rate": float(audited.sum() / max(1.0, served.sum()))}


def model_swap(cfg: InferenceSimConfig, seed: int) -> dict[str, Any]:
    """The model-swap strategy's expected profit per node (NOS) for each swap rate and
    start, its maximum, the closed-form check at the floor rate, and the audit overhead in
    served tokens (honest established and newcomer nodes)."""
    rng = np.random.default_rng(seed)
    established = cfg.params.probation + 20 * cfg.params.half_life
    rows: list[dict[str, Any]] = []
    for start, clean in (("newcomer", 0), ("established", established)):
        for q in cfg.swap_rates:
            r = _run(cfg, q, clean, rng)
            rows.append({"start": start, "swap_rate": q,
                         "expected_profit_nos": round(r["mean_profit"] / NOS, 6),
                         "caught_share": round(r["caught_share"], 4),
                         "audit_rate": round(r["audit_rate"], 5)})
    honest_new = _run(cfg, 0.0, 0, rng)["audit_rate"]
    honest_old = _run(cfg, 0.0, established, rng)["audit_rate"]
    per_request_floor = model_swap_profit(
        price=cfg.price, saving_bps=cfg.compute_cost_bps * cfg.saving_bps // 10_000,
        rate_bps=cfg.params.floor_rate_bps, detection=cfg.detection, slash=cfg.slash)
    return {
        "max_model_swap_profit_nos": max(r["expected_profit_nos"] for r in rows),
        "model_swap": rows,
        "model_swap_detection": cfg.detection,
        "model_swap_profit_per_request_at_floor_nos": round(per_request_floor / NOS, 6),
        "inference_audit_overhead_tokens": {
            "honest_newcomer": round(honest_new * cfg.replay_ratio, 5),
            "honest_established": round(honest_old * cfg.replay_ratio, 5)},
    }


__all__ = ["MEASURED_SWAP_DETECTION", "InferenceSimConfig", "model_swap"]
