"""Verification use cases: hold a verified job, and each maintenance pass advance every open
case and carry out what it asks.

The rules are in :mod:`nosgrid.core.verification` (the case's state machine is
:mod:`~nosgrid.core.verification.case`); this module loads what a case may look at (its
runs' jobs, the beacon, who could run the job again), calls ``advance`` and carries out its
commands with the money rules of :mod:`nosgrid.core.audit_settlement`. Runs are posted and
settled by :mod:`.audit_runs`.

Example (what the job use cases and the maintenance loop call)::

    held = verification.hold_if_verified(uow, job, now)   # in finish_job
    verification.tick(uow, now, config, read_blob)         # in Coordinator.maintenance
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from nosgrid.coordinator.services import audit_runs, economics, lifecycle
from nosgrid.core import audit_settlement as settle_rules
from nosgrid.core import reputation as rep_rules
from nosgrid.core.events import AuditRunnersPaid
from nosgrid.core.jobs.state import OPEN, Job, JobState
from nosgrid.core.ledger import AUDIT_POOL, Posting, wallet
from nosgrid.core.verification import (
    AuditRecord,
    Candidate,
    ReadBlob,
    compare_results,
    output_hashes,
)
from nosgrid.core.verification import case as rules
from nosgrid.core.verification.case import (
    CaseStatus,
    CaseView,
    RunStatus,
    VerificationCase,
)
from nosgrid.core.views import Comparison as ComparisonView
from nosgrid.core.views import VerificationRun, VerificationSummary, VerificationView
from nosgrid.store.db import UnitOfWork

log = logging.getLogger(__name__)

#: journal entry kinds written here
RESULT_ENTRY: Final = "job.result"
BEACON_ENTRY: Final = "verification.beacon"
VERDICT_ENTRY: Final = "audit.verdict"
AUDIT_PAID_ENTRY: Final = "audit.paid"
VerificationConfig = audit_runs.VerificationConfig


def hold_if_verified(uow: UnitOfWork, job: Job, now: int) -> Job | None:
    """Called by ``finish_job`` after the ``completed`` record.

    A job whose terms ask for verification is recorded in the journal (a ``job.result``
    entry that commits to its output hashes), opens a case and is held: ``completed →
    verifying``. Returns None when the job settles as usual (verification ``none``, or a
    verification run: see ``audit_runs.settle_run``).
    """
    terms = job.terms
    if terms is None or not terms.verified or job.node is None:
        return None
    if uow.verification.run(job.id) is not None:
        return None
    hashes = sorted(output_hashes(job.result).values())
    entry = uow.ledger.append(RESULT_ENTRY, job.id, now, (), {"node": job.node,
                                                             "outputs": hashes})
    uow.verification.save(VerificationCase(
        job.id, job.node, terms.verification, terms.replicas, result_seq=entry.seq,
        result_hash=entry.hash, held_at=now))
    return lifecycle.record(uow, settle_rules.hold_for_audit(job, now), kind="job.held")


# --------------------------------------------------------------------- the maintenance pass


@dataclass
class TickResult:
    """What one pass did."""

    decided: int = 0
    released: int = 0
    passed: int = 0
    disputed: int = 0
    verdicts: int = 0

    def counts(self) -> dict[str, int]:
        return {"audit_decisions": self.decided, "audit_released": self.released,
                "audit_passed": self.passed, "audit_disputes": self.disputed,
                "audit_verdicts": self.verdicts}


def _beacon(uow: UnitOfWork, pending: Sequence[VerificationCase], now: int) -> str:
    """The hash of the coordinator's ``verification.beacon`` entry, appended after all the
    pending jobs' result entries (one per pass, listing the jobs it decides)."""
    entry = uow.ledger.append(BEACON_ENTRY, "", now, (),
                              {"jobs": sorted(c.job_id for c in pending)})
    return entry.hash


def tick(uow: UnitOfWork, now: int, cfg: VerificationConfig, read_blob: ReadBlob) -> TickResult:
    """One verification pass over the open cases: decide, start runs, compare, settle."""
    res = TickResult()
    cases = uow.verification.open_cases()
    pending = [c for c in cases if c.status is CaseStatus.HELD]
    beacon = _beacon(uow, pending, now) if pending else ""
    pools: dict[str, list[Candidate]] = {}
    params = cfg.case_params()
    for case in cases:
        job = uow.jobs.get(case.job_id)
        step = rules.advance(case, _observe(uow, case, job, now, cfg, beacon, pools, read_blob),
                             now, params)
        after = _carry_out(uow, job, step, now, cfg, res)
        if case.status is CaseStatus.HELD:
            res.decided += 1
        if after.status is not case.status:
            res.released += after.status is CaseStatus.RELEASED
            res.passed += after.status is CaseStatus.PASSED
        if after != case:
            uow.verification.save(after)
    return res


def _observe(uow: UnitOfWork, case: VerificationCase, job: Job, now: int,
             cfg: VerificationConfig, beacon: str, pools: dict[str, list[Candidate]],
             read_blob: ReadBlob) -> CaseView:
    """What ``advance`` may look at, read from the store (the pool only when asked)."""
    runs = {}
    for r in case.runs:
        if r.retired:
            continue
        rj = uow.jobs.get(r.job_id)
        runs[r.job_id] = RunStatus(
            done=rj.state not in OPEN, succeeded=audit_runs.succeeded(rj),
            left_node=rj.state in OPEN and rj.node != r.node,
            held=rj.state is JobState.VERIFYING, result=rj.result)

    def pool() -> list[Candidate]:
        if job.market not in pools:
            pools[job.market] = audit_runs.candidate_pool(uow, job.market, now,
                                                          cfg.partner_window_s)
        return pools[job.market]

    tolerance = audit_runs.terms_of(job).tolerance
    return CaseView(
        result=job.result, finished_at=job.finished_at or now, beacon=beacon,
        record=(audit_runs.audit_record(uow, case.node, now)
                if case.status is CaseStatus.HELD else AuditRecord()),
        runs=runs, pool=pool, min_stake=uow.markets.get(job.market).min_stake,
        compare=lambda a, b: compare_results(case.mode, a, b, tolerance, read_blob))


def _carry_out(uow: UnitOfWork, job: Job, step: rules.Step, now: int,
               cfg: VerificationConfig, res: TickResult) -> VerificationCase:
    """Do what the case asked, in order; returns the case with the journal hashes filled."""
    case = step.case
    verdict_entry = ""
    for cmd in step.commands:
        current = uow.jobs.get(job.id)
        match cmd:
            case rules.PostRun(run=run):
                audit_runs.spawn_run(uow, current, run, now)
            case rules.RetireRun(job_id=run_id):
                audit_runs.retire(uow, uow.jobs.get(run_id), now)
            case rules.Release(passed=passed):
                tr = settle_rules.release_held(current, now, _audit_fee_bps(uow, case),
                                               audit_passed=passed, params=cfg.params)
                lifecycle.record(uow, tr, kind="job.settled")
                audit_runs.note_record(uow, case.node, now, faulted=False)
            case rules.PayRunners(nodes=nodes):
                _pay_runners(uow, current, nodes, now)
            case rules.SettleReplica(job_id=run_id, agrees=agrees):
                lifecycle.record(uow, settle_rules.settle_replica(uow.jobs.get(run_id), now,
                                                                  agrees=agrees),
                                 kind="job.settled")
            case rules.OpenDispute(auditor=auditor):
                lifecycle.record(uow, settle_rules.open_dispute(current, now, auditor),
                                 kind="job.disputed")
                res.disputed += 1
            case rules.RecordVerdict(outcome=outcome, auditor=auditor, panel=panel):
                verdict_entry = uow.ledger.append(VERDICT_ENTRY, job.id, now, (), {
                    "verdict": str(outcome.verdict), "node": case.node, "auditor": auditor,
                    "panel": list(panel), "votes_first": outcome.votes_first,
                    "votes_audit": outcome.votes_audit}).hash
                res.verdicts += 1
            case rules.SettleDispute(outcome=outcome, auditor=auditor, panel=panel):
                ds = settle_rules.settle_dispute(
                    current, outcome, auditor=auditor, tiebreakers=panel,
                    verdict_entry_hash=verdict_entry, now=now,
                    audit_fee_bps=_audit_fee_bps(uow, case),
                    pool_balance=uow.ledger.balance(AUDIT_POOL),
                    auditor_paid_by_client=case.client_paid)
                lifecycle.record(uow, ds.transition, kind="job.settled")
                for slash in ds.slashes:
                    economics.slash_for(uow, replace(current, node=slash.node), slash.offence,
                                        now, journal_hash=slash.evidence.journal_hash,
                                        challenger=slash.challenger)
            case rules.RecordAudit(node=node, passed=passed):
                rep = rep_rules.record_audit(uow.economics.reputation(node), now, passed=passed)
                uow.economics.save_reputation(node, rep)
            case rules.NoteRecord(node=node, faulted=faulted, partners=partners):
                audit_runs.note_record(uow, node, now, faulted=faulted, partners=partners)
    return replace(case, verdict_entry=verdict_entry) if verdict_entry else case


def _audit_fee_bps(uow: UnitOfWork, case: VerificationCase) -> int:
    """The market's audit fee, or none for a job whose client paid its own replicas."""
    if case.client_paid:
        return 0
    return uow.markets.get(uow.jobs.get(case.job_id).market).audit_fee_bps


def _pay_runners(uow: UnitOfWork, job: Job, runners: Sequence[str], now: int) -> None:
    """Pay audit runs the job's gross each from ``audit_pool``, as far as it goes."""
    each, left, postings = settle_rules.gross_pay(job), uow.ledger.balance(AUDIT_POOL), []
    for r in runners:
        amount = min(each, left)
        if amount > 0:
            postings.append(Posting(AUDIT_POOL, wallet(r), amount))
            left -= amount
    if postings:
        entry = uow.ledger.append(AUDIT_PAID_ENTRY, job.id, now, postings,
                                  {"runners": list(runners)})
        uow.publish(AuditRunnersPaid(at=now, entry=entry, job_id=job.id,
                                     runners=tuple(runners),
                                     amount=sum(p.amount for p in postings)))


# --------------------------------------------------------------------- views


def view(uow: UnitOfWork, job_id: str, actor: str) -> VerificationView:
    """What the client sees of its job's verification."""
    job = lifecycle.get_job_for(uow, job_id, actor)
    mode = job.terms.verification if job.terms else "none"
    case = uow.verification.case(job_id)
    if case is None:
        return VerificationView(job=job_id, state=job.state, mode=mode,
                                status="not_verified" if mode == "none" else "not_held")
    decided = case.decided_at is not None
    cmp = case.comparison
    return VerificationView(
        job=job_id, state=job.state, status=case.status.value, mode=case.mode,
        replicas=case.replicas, result_hash=case.result_hash,
        rate_bps=case.rate_bps if decided else None,
        audited=case.audited if decided else None,
        beacon=case.beacon or None, release_at=case.release_at, auditor=case.auditor,
        auditors=list(case.auditors) if case.auditor else None, audit_job=case.audit_job,
        panel=list(case.panel) if case.verdict and case.status is not CaseStatus.PASSED
        else None,
        verdict=case.verdict.value if case.verdict else None,
        verdict_entry=case.verdict_entry or None,
        comparison=None if cmp is None else ComparisonView(
            match=cmp.match, reason=cmp.reason, max_abs_error=cmp.max_abs_error),
        slashed=list(case.slashed) if case.verdict and case.status is not CaseStatus.PASSED
        else None,
        reason=case.reason or None,
        runs=[VerificationRun(job=r.job_id, role=r.role.value, node=r.node, slot=r.slot,
                              paid_by=r.paid_by, paid=r.paid) for r in case.runs])


def summary(uow: UnitOfWork) -> VerificationSummary:
    """Counts by status, the audit pool, and the audit overhead in compute seconds."""
    by_status = uow.verification.counts_by_status()
    runs, run_seconds = uow.verification.run_stats()
    all_seconds = uow.jobs.total_seconds()
    return VerificationSummary(
        jobs_held=sum(by_status.values()), by_status=by_status, audit_runs=runs,
        audit_pool=uow.ledger.balance(AUDIT_POOL), audit_compute_seconds=run_seconds,
        all_compute_seconds=all_seconds,
        audit_overhead=round(run_seconds / all_seconds, 4) if all_seconds else 0.0)
