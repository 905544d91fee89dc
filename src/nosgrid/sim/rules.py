"""The core rules on numpy arrays (tests prove each equals its scalar rule in ``core``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from nosgrid.core.money import BASE_UNITS_PER_NOS
from nosgrid.core.reputation import MatchingParams, ReputationParams
from nosgrid.core.slashing import Offence, SlashingParams

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def slash_amounts(vault: IntArray, offence: Offence, job_price: IntArray | int,
                  params: SlashingParams) -> IntArray:
    """``slashing.slash_amount`` on arrays: ``min(vault, max(vault·bps//10⁴, k·price))``."""
    p = params.table[offence]
    price = np.asarray(job_price, dtype=np.int64)
    out: IntArray = np.minimum(vault, np.maximum(vault * p.stake_bps // 10_000,
                                                 p.job_price_multiple * price))
    return out


def challenger_shares(amount: IntArray, offence: Offence, params: SlashingParams) -> IntArray:
    """The challenger's part of each slash (``bps_of`` on arrays)."""
    out: IntArray = amount * params.table[offence].challenger_bps // 10_000
    return out


class ReputationArrays:
    """Decayed reputation counts for many nodes; :meth:`score` equals ``reputation.score``."""

    FIELDS = ("success_ok", "success_bad", "audit_ok", "audit_bad",
              "timely_ok", "timely_bad", "uptime_ok", "uptime_bad")

    def __init__(self, n: int, params: ReputationParams) -> None:
        self.params = params
        self.counts: FloatArray = np.zeros((8, n))
        self.updated_at: FloatArray = np.zeros(n)

    def decay_to(self, now: float) -> None:
        """Bring every node's counts to ``now`` (halved every half-life)."""
        elapsed = now - self.updated_at
        f = np.where(elapsed > 0, 0.5 ** (np.maximum(elapsed, 0) / self.params.half_life), 1.0)
        self.counts *= f
        self.updated_at = np.maximum(self.updated_at, now)

    def add(self, field: str, nodes: npt.NDArray[np.intp], amount: float | FloatArray) -> None:
        """Add observations (nodes may repeat) after :meth:`decay_to`."""
        np.add.at(self.counts[self.FIELDS.index(field)], nodes, amount)

    def score(self) -> FloatArray:
        p = self.params
        a, b = p.prior_alpha, p.prior_beta
        c = self.counts
        means = (a + c[0::2]) / (a + b + c[0::2] + c[1::2])
        w = np.array([p.w_success, p.w_audit, p.w_timely, p.w_uptime])
        out: FloatArray = np.clip((w[:, None] * means).sum(axis=0), 0.0, 1.0)
        return out


def matcher_probabilities(stake: IntArray, reputation: FloatArray, jobs_done: IntArray,
                          eligible: BoolArray, params: MatchingParams) -> FloatArray:
    """``WeightedMatcher.probabilities`` for arrays (ineligible nodes get 0)."""
    ok = eligible & (stake >= params.min_stake)
    w = np.clip(np.nan_to_num(reputation), 0.0, 1.0) * np.sqrt(stake / BASE_UNITS_PER_NOS)
    w = np.where(ok, w, 0.0)
    k = int(ok.sum())
    if k == 0:
        return np.zeros(len(stake))
    mean = float(w.sum()) / k
    floor = mean * params.floor_bps / 10_000 if mean > 0 else 1.0
    w = np.where(ok, np.maximum(w, floor), 0.0)
    newcomers = ok & (jobs_done < params.newcomer_jobs)
    n_new = int(newcomers.sum())
    explore = params.exploration_bps / 10_000 if n_new else 0.0
    probs: FloatArray = (1.0 - explore) * w / float(w.sum())
    if n_new:
        probs = probs + np.where(newcomers, explore / n_new, 0.0)
    return probs


def related_mask(a: npt.NDArray[np.intp], b: npt.NDArray[np.intp], operator: IntArray,
                 partners: IntArray) -> BoolArray:
    """``verification.related`` for node index pairs: same node/operator or recent partners.

    ``partners`` is an (n, k) ring buffer of recent co-assignments (−1 = empty).
    """
    same = (a == b) | (operator[a] == operator[b])
    a_in_b = (partners[b] == a[:, None]).any(axis=1)
    b_in_a = (partners[a] == b[:, None]).any(axis=1)
    out: BoolArray = same | a_in_b | b_in_a
    return out
