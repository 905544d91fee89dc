"""Reputation: a decayed, Beta-prior score per node in [0, 1], and the weighted matcher.

**The score.** Four signals are counted as decayed successes ``a`` and failures ``b``:

========  ==========================================  ======
signal    success / failure                            weight
========  ==========================================  ======
success   job completed / failed by the node's fault   0.35
audit     audit passed / failed (a fail counts 5×)     0.35
timely    finished by the deadline / late (partial)    0.15
uptime    heartbeats received / missed                 0.15
========  ==========================================  ======

Each signal's estimate is the Beta posterior mean ``(α + a) / (α + β + a + b)`` with the
prior ``α = β = 2``, so a node with no history sits at 0.5 — neither trusted nor starved
— and a handful of observations cannot push it to 0 or 1. The score is the weighted
mean of the four, hence in [0, 1]. Before every update all counts are multiplied by
``2 ** (−elapsed / half_life)`` (30 days by default), so old behaviour fades and a
reformed node recovers.

Worked example: a new node scores 0.5. It completes 8 jobs on time with all heartbeats
(8 each) and passes 2 audits: success = timely = uptime = (2+8)/(4+8) = 0.8333,
audit = (2+2)/(4+2) = 0.6667, so the score is
0.35·0.8333 + 0.35·0.6667 + 0.15·0.8333 + 0.15·0.8333 = 0.775:

>>> r = NodeReputation()
>>> round(score(r, now=0), 4)
0.5
>>> for t in range(8):
...     r = record_job(r, now=t, succeeded=True, on_time=1.0)
...     r = record_heartbeats(r, now=t, received=1, expected=1)
>>> r = record_audit(record_audit(r, now=8, passed=True), now=8, passed=True)
>>> round(score(r, now=8), 4)
0.775
>>> round(score(r, now=8 + 1000 * 86_400), 4)  # 1000 days later it has faded to the prior
0.5

**Assignment.** :class:`WeightedMatcher` picks among eligible idle nodes with weight
``reputation × sqrt(stake in NOS)``, floored at ``floor_bps`` of the mean weight, and
gives ``exploration_bps`` of picks uniformly to newcomers (``jobs_done`` below a
threshold). See ``docs/economics.md`` for why the square root.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import numpy.typing as npt

from nosgrid.core.errors import InvalidInput
from nosgrid.core.markets import NodeCandidate
from nosgrid.core.money import BASE_UNITS_PER_NOS

DAY: Final = 86_400


@dataclass(frozen=True, slots=True)
class ReputationParams:
    """Weights, prior, decay half-life and the audit-failure multiplier."""

    half_life: int = 30 * DAY
    prior_alpha: float = 2.0
    prior_beta: float = 2.0
    w_success: float = 0.35
    w_audit: float = 0.35
    w_timely: float = 0.15
    w_uptime: float = 0.15
    audit_failure_weight: float = 5.0

    def __post_init__(self) -> None:
        ws = (self.w_success, self.w_audit, self.w_timely, self.w_uptime)
        if min(ws) < 0 or not math.isclose(sum(ws), 1.0):
            raise InvalidInput("reputation weights must be >= 0 and sum to 1")
        if self.half_life <= 0 or self.prior_alpha <= 0 or self.prior_beta <= 0:
            raise InvalidInput("half_life and the prior must be positive")


DEFAULT_REPUTATION: Final = ReputationParams()


@dataclass(frozen=True, slots=True)
class NodeReputation:
    """Decayed counts as of ``updated_at`` (one row per node)."""

    success_ok: float = 0.0
    success_bad: float = 0.0
    audit_ok: float = 0.0
    audit_bad: float = 0.0
    timely_ok: float = 0.0
    timely_bad: float = 0.0
    uptime_ok: float = 0.0
    uptime_bad: float = 0.0
    updated_at: int = 0


_FIELDS: Final = ("success_ok", "success_bad", "audit_ok", "audit_bad",
                  "timely_ok", "timely_bad", "uptime_ok", "uptime_bad")


def decayed(rep: NodeReputation, now: int,
            params: ReputationParams = DEFAULT_REPUTATION) -> NodeReputation:
    """The counts decayed to ``now`` (halved every ``half_life`` seconds)."""
    elapsed = now - rep.updated_at
    if elapsed <= 0:
        return rep
    f = 0.5 ** (elapsed / params.half_life)
    return replace(rep, updated_at=now, **{n: getattr(rep, n) * f for n in _FIELDS})


def _add(rep: NodeReputation, now: int, params: ReputationParams, **delta: float) -> NodeReputation:
    rep = decayed(rep, now, params)
    return replace(rep, **{k: getattr(rep, k) + v for k, v in delta.items()})


def record_job(rep: NodeReputation, now: int, *, succeeded: bool, on_time: float = 1.0,
               params: ReputationParams = DEFAULT_REPUTATION) -> NodeReputation:
    """Count a finished job. ``on_time`` is 1 by the deadline, else ``1 − overrun/timeout``."""
    t = min(max(on_time, 0.0), 1.0)
    return _add(rep, now, params, success_ok=1.0 if succeeded else 0.0,
                success_bad=0.0 if succeeded else 1.0, timely_ok=t, timely_bad=1.0 - t)


def timeliness(finished_at: int, deadline: int, timeout: int) -> float:
    """1.0 when finished by the deadline, falling linearly to 0 at one timeout late."""
    late = finished_at - deadline
    return 1.0 if late <= 0 else max(0.0, 1.0 - late / max(timeout, 1))


def record_audit(rep: NodeReputation, now: int, *, passed: bool,
                 params: ReputationParams = DEFAULT_REPUTATION) -> NodeReputation:
    """Count an audit verdict; a failure weighs ``audit_failure_weight`` observations."""
    if passed:
        return _add(rep, now, params, audit_ok=1.0)
    return _add(rep, now, params, audit_bad=params.audit_failure_weight)


def record_heartbeats(rep: NodeReputation, now: int, *, received: int, expected: int,
                      params: ReputationParams = DEFAULT_REPUTATION) -> NodeReputation:
    """Count heartbeats over a period: ``received`` of ``expected``."""
    if expected < 0 or received < 0:
        raise InvalidInput("heartbeat counts must be >= 0")
    got = min(received, expected)
    return _add(rep, now, params, uptime_ok=float(got), uptime_bad=float(expected - got))


def score(rep: NodeReputation, now: int,
          params: ReputationParams = DEFAULT_REPUTATION) -> float:
    """The node's reputation in [0, 1] at ``now``."""
    r = decayed(rep, now, params)
    a, b = params.prior_alpha, params.prior_beta

    def mean(ok: float, bad: float) -> float:
        return (a + ok) / (a + b + ok + bad)

    value = (params.w_success * mean(r.success_ok, r.success_bad)
             + params.w_audit * mean(r.audit_ok, r.audit_bad)
             + params.w_timely * mean(r.timely_ok, r.timely_bad)
             + params.w_uptime * mean(r.uptime_ok, r.uptime_bad))
    return min(1.0, max(0.0, value))


# --------------------------------------------------------------------- matcher


@dataclass(frozen=True, slots=True)
class MatchingParams:
    """How the weighted matcher shares work."""

    exploration_bps: int = 1_000  # share of picks reserved for newcomers
    newcomer_jobs: int = 10  # below this many jobs a node is a newcomer
    floor_bps: int = 1_000  # every eligible node weighs >= 10% of the mean weight
    min_stake: int = 0  # candidates below this are never picked

    def __post_init__(self) -> None:
        if not (0 <= self.exploration_bps < 10_000 and 0 < self.floor_bps <= 10_000):
            raise InvalidInput("exploration_bps in 0..9999 and floor_bps in 1..10000")
        if self.newcomer_jobs < 0 or self.min_stake < 0:
            raise InvalidInput("newcomer_jobs and min_stake must be >= 0")


FloatArray = npt.NDArray[np.float64]


class PreparedCandidates:
    """Candidates turned into cumulative weights once; each pick is then O(log n).

    :meth:`without` takes a picked node out with a few numpy operations (no Python
    loop over the candidates), so a scheduling round prepares the idle set once and then
    assigns job after job. The weight floor stays the one computed at preparation.
    """

    __slots__ = ("_cum", "_explore", "_left", "_newcomers", "_params", "candidates")

    def __init__(self, candidates: Sequence[NodeCandidate], params: MatchingParams) -> None:
        self.candidates = tuple(candidates)
        self._params = params
        n = len(self.candidates)
        stake = np.fromiter((c.stake for c in self.candidates), np.float64, n)
        rep = np.fromiter((c.reputation for c in self.candidates), np.float64, n)
        jobs = np.fromiter((c.jobs_done for c in self.candidates), np.int64, n)
        eligible = stake >= params.min_stake
        w = np.clip(np.nan_to_num(rep), 0.0, 1.0) * np.sqrt(stake / BASE_UNITS_PER_NOS)
        w = np.where(eligible, w, 0.0)
        k = int(eligible.sum())
        mean = float(w.sum()) / k if k else 0.0
        floor = mean * params.floor_bps / 10_000 if mean > 0 else 1.0
        w = np.where(eligible, np.maximum(w, floor), 0.0)
        self._cum: FloatArray = np.cumsum(w)
        self._left = k  # eligible candidates not yet taken out
        self._newcomers = np.flatnonzero(eligible & (jobs < params.newcomer_jobs))
        self._explore = params.exploration_bps / 10_000 if len(self._newcomers) else 0.0

    @property
    def probabilities(self) -> FloatArray:
        """Probability of each candidate being picked (sums to 1, or 0 if none eligible)."""
        w = np.diff(self._cum, prepend=0.0)
        total = float(self._cum[-1]) if self._left > 0 else 0.0
        probs: FloatArray = (np.zeros(len(w)) if total <= 0
                             else (1.0 - self._explore) * w / total)
        if len(self._newcomers):
            probs[self._newcomers] += self._explore / len(self._newcomers)
        return probs

    def without(self, index: int) -> PreparedCandidates:
        """The same pool with candidate ``index`` (e.g. the node just assigned) left out."""
        new = object.__new__(PreparedCandidates)
        new.candidates, new._params = self.candidates, self._params
        weight = self._cum[index] - (self._cum[index - 1] if index else 0.0)
        cum = self._cum.copy()
        cum[index:] -= weight
        cum[index] = cum[index - 1] if index else 0.0  # exactly zero width: never picked
        new._cum = cum
        new._left = self._left - (1 if weight > 0 else 0)
        new._newcomers = self._newcomers[self._newcomers != index]
        new._explore = self._explore if len(new._newcomers) else 0.0
        return new

    def pick_index(self, seed: int) -> int | None:
        """Index of the candidate picked with ``seed`` (reproducible), or None."""
        if self._left <= 0 or self._cum[-1] <= 0:
            return None
        u = random.Random(seed).random()
        if u < self._explore:
            return int(self._newcomers[int(u / self._explore * len(self._newcomers))])
        v = (u - self._explore) / (1.0 - self._explore) * float(self._cum[-1])
        i = int(np.searchsorted(self._cum, v, side="right"))
        return min(i, len(self._cum) - 1)

    def pick(self, seed: int) -> NodeCandidate | None:
        i = self.pick_index(seed)
        return None if i is None else self.candidates[i]


class WeightedMatcher:
    """A :class:`~nosgrid.core.markets.Matcher` preferring reputation × √stake.

    Probability of candidate *i*: ``(1 − e)·w_i/Σw + e·[newcomer]/N_new`` with
    ``w_i = max(rep_i·√(stake_i/1 NOS), floor·mean(w))`` for eligible nodes.
    A tuple of candidates is prepared once and reused while the same tuple is passed.

    >>> m = WeightedMatcher()
    >>> cs = (NodeCandidate("a", 0, stake=100_000_000, reputation=0.9, jobs_done=50),
    ...       NodeCandidate("b", 0, stake=1_000_000, reputation=0.5, jobs_done=0))
    >>> m.pick(cs, seed=1).node_id == m.pick(cs, seed=1).node_id
    True
    >>> [round(float(p), 3) for p in m.probabilities(cs)]
    [0.853, 0.147]
    """

    def __init__(self, params: MatchingParams | None = None) -> None:
        self.params = params or MatchingParams()
        self._cached: PreparedCandidates | None = None

    def prepare(self, candidates: Sequence[NodeCandidate]) -> PreparedCandidates:
        """Precompute weights for many picks over the same candidates."""
        cached = self._cached
        if cached is not None and isinstance(candidates, tuple) and (
                candidates is cached.candidates):
            return cached
        prepared = PreparedCandidates(candidates, self.params)
        self._cached = prepared
        return prepared

    def probabilities(self, candidates: Sequence[NodeCandidate]) -> FloatArray:
        """The intended share of picks for each candidate."""
        return self.prepare(candidates).probabilities

    def pick(self, candidates: Sequence[NodeCandidate], seed: int) -> NodeCandidate | None:
        if not candidates:
            return None
        return self.prepare(candidates).pick(seed)
