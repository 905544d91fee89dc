"""Verification runs: who may run a job again, posting a run, settling it, taking it back;
and each node's audit record (clean jobs since its last fault, recent partners).

An audit, replica or tiebreak run is an ordinary job posted for the same client and spec
and assigned straight to the node the case chose (:mod:`nosgrid.core.verification.case`);
only its ``verification_runs`` row, which no node can read, marks it. Its escrow comes from
``audit_pool``, or from the job's ``replicas:`` reserve when the client paid for it, and
goes back there when the run settles (:func:`settle_run`); the case decides who is paid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from nosgrid.coordinator.services import lifecycle
from nosgrid.core import audit_settlement as settle_rules
from nosgrid.core import reputation as rep_rules
from nosgrid.core.errors import InvalidInput
from nosgrid.core.events import JobSettled, ReplicaReserveReturned
from nosgrid.core.jobs import state as job_rules
from nosgrid.core.jobs.state import OPEN, Job, JobState, Outcome, Transition
from nosgrid.core.jobs.terms import JobTerms
from nosgrid.core.ledger import AUDIT_POOL, Posting, escrow, replica_reserve, wallet
from nosgrid.core.slashing import may_take_jobs
from nosgrid.core.verification import AuditRecord, Candidate, VerificationParams, next_record
from nosgrid.core.verification.case import CaseParams, CaseRun
from nosgrid.store.db import UnitOfWork

#: journal entry kinds written here
RUN_SETTLED_ENTRY: Final = "audit.run.settled"
RESERVE_RETURNED_ENTRY: Final = "job.replicas.returned"
#: partners remembered per node (the most recent)
PARTNER_MEMORY: Final = 50


@dataclass(frozen=True, slots=True)
class VerificationConfig:
    """The coordinator's verification settings (see ``CoordinatorSettings``)."""

    params: VerificationParams = field(default_factory=VerificationParams)
    #: force this audit rate (bps) for every auditable job; None → the adaptive rate
    force_rate_bps: int | None = None
    #: a shared audit/tiebreak within this many seconds makes two nodes "recent partners"
    partner_window_s: int = 7 * 24 * 3_600

    def case_params(self) -> CaseParams:
        return CaseParams(self.params, self.force_rate_bps)


def terms_of(job: Job) -> JobTerms:
    if job.terms is None:
        raise InvalidInput(f"job {job.id} has no terms")
    return job.terms


# --------------------------------------------------------------------- who may run it


def candidate_pool(uow: UnitOfWork, market: str, now: int, window_s: int) -> list[Candidate]:
    """Online, unjailed nodes in ``market`` as the runner choice sees them.

    The registry has no operator keys or delegations yet: a node's operator is its own key
    (the stake owner) and ``recent_partners`` are the nodes it shared a verification with
    within ``window_s``.
    """
    params = uow.markets.get(market)
    clean = uow.verification.clean_jobs()
    partners = uow.verification.partners(since=now - window_s)
    out = []
    for n in uow.nodes.all():
        if market not in n["markets"]:
            continue
        acct = uow.economics.stake(n["id"])
        available = (n.get("status") == "online"
                     and may_take_jobs(acct, uow.economics.offences(n["id"]), params, now))
        out.append(Candidate(
            node_id=n["id"], operator=acct.owner if acct else "",
            recent_partners=frozenset(partners.get(n["id"], ())),
            clean_jobs=clean.get(n["id"], 0),
            reputation=rep_rules.score(uow.economics.reputation(n["id"]), now),
            stake=acct.market_stake if acct else 0, available=available))
    return out


def audit_record(uow: UnitOfWork, node: str, now: int) -> AuditRecord:
    clean_jobs, _faults = uow.verification.record(node)
    return AuditRecord(clean_jobs, rep_rules.score(uow.economics.reputation(node), now))


def note_record(uow: UnitOfWork, node: str, now: int, *, faulted: bool | None,
                partners: Iterable[str] = ()) -> None:
    """Count one verified job for ``node`` (``faulted`` None: only remember ``partners``)."""
    clean_jobs, faults = uow.verification.record(node)
    if faulted is not None:
        clean_jobs = next_record(AuditRecord(clean_jobs), faulted=faulted,
                                 reputation=0.5).clean_jobs
        faults += 1 if faulted else 0
    uow.verification.save_record(node, clean_jobs, faults)
    uow.verification.note_partners(node, partners, now, keep=PARTNER_MEMORY)


# --------------------------------------------------------------------- the runs


def spawn_run(uow: UnitOfWork, job: Job, run: CaseRun, now: int) -> Job:
    """Post ``run``: a copy of ``job`` (same client, spec, timeout, deposit) assigned to
    ``run.node``, funded from ``audit_pool`` as far as the pool goes, or from the job's
    ``replicas:`` reserve for a replica the client asked for."""
    market = uow.markets.get(job.market)
    terms = replace(terms_of(job), replicas=1, max_price=job.deposit, posting_fee=0,
                    head_start=0)  # the run's client pays no second posting fee
    tr = job_rules.post(job_id=run.job_id, client=job.client, market=market,
                        spec_hash=job.spec_hash, terms=terms, now=now)
    copy = replace(tr.job, deposit=job.deposit, price_per_second=job.price_per_second,
                   fee_bps=job.fee_bps, stakers_share_bps=job.stakers_share_bps)
    funder = replica_reserve(job.id) if run.paid_by == "client" else AUDIT_POOL
    funded = min(copy.deposit, uow.ledger.balance(funder))
    postings = (Posting(funder, escrow(run.job_id), funded),) if funded else ()
    lifecycle.record(uow, Transition(copy, tr.events, postings), kind="job.posted", new=True)
    return lifecycle.assign_to(uow, copy, run.node, now)


def settle_run(uow: UnitOfWork, job: Job, now: int) -> Job | None:
    """Settle a verification run whatever way it ended (None: ``job`` is not a run).

    A pool-funded run's escrow goes back to ``audit_pool``; its runner is paid from the
    pool when the verdict is in. A client-paid replica that succeeded is held (its escrow
    stays) until the verdict says whether its runner is paid; one without a result returns
    its escrow to the job's ``replicas:`` reserve for the next try.
    """
    found = uow.verification.run(job.id)
    if found is None:
        return None
    of_job, run = found
    client_paid = run.paid_by == "client"
    if client_paid and succeeded(job) and job.state is JobState.COMPLETED:
        return lifecycle.record(uow, settle_rules.hold_for_audit(job, now), kind="job.held")
    back = replica_reserve(of_job) if client_paid else AUDIT_POOL
    tr = settle_rules.settle_run(job, now, returned_to=back,
                                 held=uow.ledger.balance(escrow(job.id)), of_job=of_job)
    return lifecycle.record(uow, tr, kind=RUN_SETTLED_ENTRY)


def retire(uow: UnitOfWork, run: Job, now: int) -> Job:
    """Take back a run that left its chosen node (requeued, or taken by another node)."""
    ended = lifecycle.record(uow, job_rules.cancel(run, now, "reassigned",
                                                   outcome=Outcome.WITHDRAWN),
                             kind="job.cancelled")
    return settle_run(uow, ended, now) or ended


def succeeded(run: Job) -> bool:
    """The run is over and delivered a result."""
    return run.state not in OPEN and run.outcome is Outcome.COMPLETED and bool(run.result)


def return_unused_reserve(uow: UnitOfWork, event: JobSettled) -> None:
    """Handler of ``JobSettled``: give the client back what its job's redundant runs did
    not use (``replicas:<job>``): once the job settles no replica of it runs any more."""
    job = event.job
    left = uow.ledger.balance(replica_reserve(job.id))
    if left > 0:
        entry = uow.ledger.append(RESERVE_RETURNED_ENTRY, job.id, event.at,
                                  [Posting(replica_reserve(job.id), wallet(job.client), left)],
                                  {})
        uow.publish(ReplicaReserveReturned(at=event.at, entry=entry, job_id=job.id, amount=left))
