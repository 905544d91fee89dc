"""Verification sampling: which jobs are audited, and by whom.

**Audit rate** (adaptive, like BOINC's adaptive replication). A node's record is the
number of clean jobs since it joined or since its last fault, and its reputation::

    rate = floor + (newcomer − floor) · 2^(−max(0, clean − probation) / half_life)
    rate = newcomer                    if reputation < low_reputation

in basis points, rounded; defaults 60% for newcomers (first 100 jobs), halving the
excess every 75 jobs down to a 10% floor (never zero). :func:`audit_rates_bps` is the
vectorised form used by the simulator; the scalar :func:`audit_rate_bps` calls it, so
they agree bit for bit.

**Sampling** is recomputable by anyone: ``should_audit`` draws from
``sha256("nosgrid-audit" ‖ beacon ‖ job_id)`` where the beacon is the hash of the first
journal entry *after* the one that recorded the job's result, so the node cannot know
(or grind) the draw when it submits. **Auditors** are drawn the same way among eligible
candidates (established, not jailed, staked) that share no operator key, no delegator
and no recent co-assignment with the audited node.

Outputs are compared and disputes decided in :mod:`.comparison`; the money and state
transitions (hold, release, replicas, dispute settlement) are in
:mod:`nosgrid.core.audit_settlement`.

>>> rec = AuditRecord(clean_jobs=0, reputation=0.5)
>>> audit_rate_bps(rec), audit_rate_bps(AuditRecord(clean_jobs=5_000, reputation=0.9))
(6000, 1000)
>>> should_audit("job-1", "ab" * 32, 10_000), should_audit("job-1", "ab" * 32, 0)
(True, False)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from nosgrid.core.errors import InvalidInput

Mode = Literal["deterministic", "tolerance", "none"]
IntArray = npt.NDArray[np.int64]

HOUR: Final = 3_600


@dataclass(frozen=True, slots=True)
class VerificationParams:
    """Audit-rate curve, auditor eligibility, dispute panel and payment hold.

    Cheating does not pay when ``audit rate × detection per audit × (price + slash)`` is
    larger than what a cheater saves per job or request. For gateway requests (a node
    serving a cheaper model) the figures are ``InferenceAuditParams`` and the detection
    ``bench/inference_audit.py`` measured; ``inference.model_swap_profit`` computes it and
    ``nosgrid sim --json`` reports ``max_model_swap_profit_nos``.

    >>> VerificationParams().floor_rate_bps
    1000
    """

    newcomer_rate_bps: int = 6_000
    floor_rate_bps: int = 1_000
    probation_jobs: int = 100
    half_life_jobs: int = 75
    low_reputation: float = 0.4
    auditor_min_clean_jobs: int = 200
    auditor_min_reputation: float = 0.5
    tiebreakers: int = 3
    audit_window: int = 24 * HOUR
    default_abs_eps: float = 1e-9
    default_rel_eps: float = 1e-6
    #: suggested ``MarketParams.audit_fee_bps`` for auditable markets (measured, see docs)
    audit_fee_bps: int = 1_200

    def __post_init__(self) -> None:
        if not 0 < self.floor_rate_bps <= self.newcomer_rate_bps <= 10_000:
            raise InvalidInput("need 0 < floor_rate_bps <= newcomer_rate_bps <= 10000: "
                               "the audit rate is never zero")
        if self.probation_jobs < 0 or self.half_life_jobs <= 0 or self.audit_window < 0:
            raise InvalidInput("probation_jobs >= 0, half_life_jobs > 0, audit_window >= 0")
        if self.tiebreakers < 1 or self.auditor_min_clean_jobs < 0:
            raise InvalidInput("tiebreakers >= 1 and auditor_min_clean_jobs >= 0")
        if min(self.default_abs_eps, self.default_rel_eps) < 0:
            raise InvalidInput("tolerances must be >= 0")
        if not 0 <= self.audit_fee_bps <= 10_000:
            raise InvalidInput("audit_fee_bps must be within 0..10000")


DEFAULT_VERIFICATION: Final = VerificationParams()


# --------------------------------------------------------------------- audit rate


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What the audit rate depends on: clean jobs since joining or the last fault, reputation."""

    clean_jobs: int = 0
    reputation: float = 0.5


def audit_rates_bps(clean_jobs: npt.ArrayLike, reputation: npt.ArrayLike,
                    params: VerificationParams = DEFAULT_VERIFICATION) -> IntArray:
    """Vectorised audit rate in bps for arrays of records (the rule's single source).

    >>> audit_rates_bps([0, 100, 200, 10_000], [0.5, 0.5, 0.5, 0.2]).tolist()
    [6000, 6000, 2984, 6000]
    """
    clean = np.asarray(clean_jobs, dtype=np.float64)
    rep = np.asarray(reputation, dtype=np.float64)
    excess = np.maximum(clean - params.probation_jobs, 0.0)
    span = float(params.newcomer_rate_bps - params.floor_rate_bps)
    rate = params.floor_rate_bps + span * np.exp2(-excess / params.half_life_jobs)
    rate = np.where(rep < params.low_reputation, float(params.newcomer_rate_bps), rate)
    out: IntArray = np.clip(np.rint(rate), params.floor_rate_bps,
                            params.newcomer_rate_bps).astype(np.int64)
    return out


def audit_rate_bps(record: AuditRecord,
                   params: VerificationParams = DEFAULT_VERIFICATION) -> int:
    """Audit rate of one node in basis points (between the floor and the newcomer rate)."""
    return int(audit_rates_bps([record.clean_jobs], [record.reputation], params)[0])


def audit_probability(record: AuditRecord,
                      params: VerificationParams = DEFAULT_VERIFICATION) -> float:
    """:func:`audit_rate_bps` as a probability in (0, 1].

    >>> audit_probability(AuditRecord(0))
    0.6
    """
    return audit_rate_bps(record, params) / 10_000


def job_audit_rate_bps(mode: Mode, record: AuditRecord, replicas: int = 1,
                       params: VerificationParams = DEFAULT_VERIFICATION) -> int:
    """The rate for one job: 0 for ``none``; redundant replicas are compared anyway (0 extra).

    >>> job_audit_rate_bps("none", AuditRecord()), job_audit_rate_bps("tolerance", AuditRecord())
    (0, 6000)
    """
    if mode == "none" or replicas > 1:
        return 0
    return audit_rate_bps(record, params)


def _check_hash(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InvalidInput(f"{what} must be a sha256 hex digest (64 hex characters)")
    return raw


def _draw(tag: bytes, beacon: str, *parts: str) -> int:
    h = hashlib.sha256(tag + b"\x00" + _check_hash(beacon, "beacon"))
    for part in parts:
        h.update(b"\x00" + part.encode())
    return int.from_bytes(h.digest()[:8], "big")


def audit_draw(job_id: str, beacon: str) -> int:
    """The job's draw in ``0..9999`` from ``sha256("nosgrid-audit" ‖ beacon ‖ job_id)``."""
    return (_draw(b"nosgrid-audit", beacon, job_id) * 10_000) >> 64


def should_audit(job_id: str, beacon: str, rate_bps: int) -> bool:
    """Audit this job? Recomputable from the beacon (hash of the entry after the result).

    >>> sum(should_audit(f"j{i}", "00" * 32, 2_500) for i in range(2_000))  # about 500
    489
    """
    if not 0 <= rate_bps <= 10_000:
        raise InvalidInput(f"rate_bps must be within 0..10000, got {rate_bps}")
    return audit_draw(job_id, beacon) < rate_bps


# --------------------------------------------------------------------- auditors


@dataclass(frozen=True, slots=True)
class Candidate:
    """A node as the auditor choice sees it. ``operator`` '' means the node's own key."""

    node_id: str
    operator: str = ""
    delegators: frozenset[str] = frozenset()
    recent_partners: frozenset[str] = frozenset()
    clean_jobs: int = 0
    reputation: float = 0.5
    stake: int = 0
    available: bool = True  # online, in the market, not jailed

    @property
    def operator_key(self) -> str:
        return self.operator or self.node_id


def related(a: Candidate, b: Candidate) -> bool:
    """Same node, same operator, a shared delegator or a recent co-assignment.

    >>> related(Candidate("a", operator="op"), Candidate("b", operator="op"))
    True
    >>> related(Candidate("a"), Candidate("b", recent_partners=frozenset({"a"})))
    True
    """
    return (a.node_id == b.node_id or a.operator_key == b.operator_key
            or bool(a.delegators & b.delegators)
            or a.node_id in b.recent_partners or b.node_id in a.recent_partners)


def may_audit(candidate: Candidate, audited: Candidate,
              params: VerificationParams = DEFAULT_VERIFICATION, min_stake: int = 0) -> bool:
    """Is ``candidate`` an eligible, independent auditor of ``audited``?"""
    return (candidate.available and candidate.stake >= min_stake
            and candidate.clean_jobs >= params.auditor_min_clean_jobs
            and candidate.reputation >= params.auditor_min_reputation
            and not related(candidate, audited))


def choose_auditor(job_id: str, beacon: str, audited: Candidate,
                   candidates: Iterable[Candidate],
                   params: VerificationParams = DEFAULT_VERIFICATION, *,
                   exclude: Sequence[Candidate] = (), purpose: str = "audit",
                   min_stake: int = 0) -> Candidate | None:
    """Pick the auditor by verifiable randomness among eligible, unrelated candidates.

    ``exclude``: nodes already involved (the auditor, when choosing a tiebreaker); their
    relatives are excluded too. Same inputs give the same auditor, for anyone.

    >>> cs = [Candidate(f"n{i}", clean_jobs=500, reputation=0.8) for i in range(5)]
    >>> choose_auditor("j1", "ab" * 32, cs[0], cs).node_id != "n0"
    True
    >>> choose_auditor("j1", "ab" * 32, cs[0], cs[:1]) is None
    True
    """
    seen: dict[str, Candidate] = {}
    for c in candidates:
        if (c.node_id not in seen and may_audit(c, audited, params, min_stake)
                and not any(related(c, x) for x in exclude)):
            seen[c.node_id] = c
    if not seen:
        return None
    ordered = sorted(seen)
    return seen[ordered[_draw(b"nosgrid-auditor", beacon, job_id, purpose) % len(ordered)]]


def choose_panel(job_id: str, beacon: str, audited: Candidate, auditor: Candidate,
                 candidates: Sequence[Candidate],
                 params: VerificationParams = DEFAULT_VERIFICATION, *,
                 min_stake: int = 0) -> tuple[Candidate, ...]:
    """Up to ``params.tiebreakers`` independent tiebreakers for a dispute (may be fewer)."""
    panel: list[Candidate] = []
    for i in range(params.tiebreakers):
        pick = choose_auditor(job_id, beacon, audited, candidates, params,
                              exclude=(auditor, *panel), purpose=f"tiebreak:{i}",
                              min_stake=min_stake)
        if pick is None:
            break
        panel.append(pick)
    return tuple(panel)


def next_record(record: AuditRecord, *, faulted: bool, reputation: float) -> AuditRecord:
    """The record after one more verified job: a fault (or inconclusive dispute) resets it."""
    if faulted:
        return AuditRecord(0, reputation)
    return AuditRecord(record.clean_jobs + 1, reputation)


def detection_within(fake_rate: float, rates_bps: Sequence[int] | IntArray) -> float:
    """P(a node faking ``fake_rate`` of its jobs is audited on a fake within these jobs).

    >>> round(detection_within(0.05, [1_000] * 1_000), 4)
    0.9933
    """
    q = np.asarray(rates_bps, dtype=np.float64) / 10_000
    return float(1.0 - math.exp(float(np.sum(np.log1p(-fake_rate * q)))))
