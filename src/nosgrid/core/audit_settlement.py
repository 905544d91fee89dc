"""The money of verification: what a held or disputed job pays, to whom, and when.

Pure rules on top of :mod:`nosgrid.core.verification` (which decides *whether* a job is
audited and *what* the verdict is); this module moves the job's state and its escrow:

* **holding** — :func:`hold_for_audit` moves every auditable job completed → verifying, so
  the node's pay stays in ``escrow:<job>`` for ``audit_window`` seconds (holding every
  job, not only the sampled ones, reveals nothing about the draw);
* **releasing** — :func:`release_held` settles it once the window has closed (or the
  audit passed), with :func:`settle_postings` carving ``audit_fee_bps`` of the gross
  (:func:`gross_pay`) out of the node's pay into ``audit_pool``; an early release raises
  :class:`AuditWindowOpen`;
* **client-paid replicas** — :func:`settle_replica` pays a replica that agrees with the
  winning result like any job and refunds one that disagrees to the client whole;
* **disputes** — :func:`open_dispute` moves verifying → disputed; :func:`settle_dispute`
  settles per :class:`~nosgrid.core.verification.Verdict` (refund or pay the node, pay
  auditor and panel runs from ``audit_pool`` as far as it goes, and return the
  ``SlashNode`` command for the losing side, if any) as a :class:`DisputeSettlement`.

>>> from nosgrid.core.jobs.state import Job
>>> j = Job("j", "c", "m", "h", 10, 1_000, 100, 500, seconds_used=10, node="n",
...         state=JobState.COMPLETED, finished_at=10)
>>> held = hold_for_audit(j, now=10)
>>> held.job.state.value, held.events[0].release_at  # released a day after it finished
('verifying', 86410)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from nosgrid.core.errors import Conflict, IllegalTransition, InvalidInput
from nosgrid.core.events import AuditVerdictReached, JobDisputed, JobHeldForAudit, RunSettled
from nosgrid.core.jobs.state import (
    Job,
    JobState,
    Outcome,
    Transition,
    can,
    payout,
    settle,
    settled_event,
)
from nosgrid.core.ledger import STAKERS_POOL, TREASURY, Posting, escrow, wallet
from nosgrid.core.money import bps_of
from nosgrid.core.slashing import Evidence, Offence, SlashNode
from nosgrid.core.verification import (
    AUDIT_POOL,
    DEFAULT_VERIFICATION,
    DisputeOutcome,
    Verdict,
    VerificationParams,
)


class AuditWindowOpen(Conflict):
    code = "audit_window_open"
    default_message = "The job's audit window is still open; its payment is held until then."


def _advance(job: Job, action: str, target: JobState, outcome: Outcome | None = None) -> Job:
    """A step of the job's own transition table (``core.jobs.state.TRANSITIONS``)."""
    if not can(job, action):
        raise IllegalTransition(f"cannot {action} job {job.id}: it is {job.state.value}",
                                job_id=job.id, state=job.state.value, action=action)
    return replace(job, state=target, outcome=outcome or job.outcome)


def gross_pay(job: Job) -> int:
    """What the job's run is billed (price × seconds, capped by the deposit)."""
    p = payout(job)
    return p.node_pay + p.treasury_fee + p.stakers_fee


def hold_for_audit(job: Job, now: int,
                   params: VerificationParams = DEFAULT_VERIFICATION) -> Transition:
    """completed → verifying: the node's pay stays in escrow until the window closes.

    Every auditable job is held (not only the sampled ones), so holding reveals nothing.
    """
    new = _advance(job, "verify", JobState.VERIFYING)
    finished = job.finished_at if job.finished_at is not None else now
    ev = JobHeldForAudit(at=now, job_id=job.id, release_at=finished + params.audit_window)
    return Transition(new, (ev,))


def settle_postings(job: Job, audit_fee_bps: int, stakers_account: str = STAKERS_POOL
                    ) -> tuple[Posting, ...]:
    """The job's normal settle postings with ``audit_fee_bps`` of gross carved from node pay.

    >>> from nosgrid.core.jobs.state import Job
    >>> j = Job("j", "c", "m", "h", 10, 1_000, 100, 500, seconds_used=10, node="n",
    ...         state=JobState.VERIFYING)
    >>> [(p.dst, p.amount) for p in settle_postings(j, 1_000)]
    [('wallet:n', 850), ('treasury', 50), ('audit_pool', 100)]
    """
    pay = payout(job)
    fee = min(bps_of(gross_pay(job), audit_fee_bps), pay.node_pay)
    legs = [(wallet(job.node) if job.node else "", pay.node_pay - fee),
            (TREASURY, pay.treasury_fee), (stakers_account, pay.stakers_fee),
            (AUDIT_POOL, fee), (wallet(job.client), pay.refund)]
    return tuple(Posting(escrow(job.id), dst, amt) for dst, amt in legs if dst and amt > 0)


def release_held(job: Job, now: int, audit_fee_bps: int, *, audit_passed: bool = False,
                 params: VerificationParams = DEFAULT_VERIFICATION) -> Transition:
    """verifying → settled once the window has closed (or the audit passed): pay the node.

    A passed audit is also an ``AuditVerdictReached`` (``agreed``), before the
    ``JobSettled``, so a receipt can tell an audited result from an unaudited one."""
    finished = job.finished_at if job.finished_at is not None else 0
    if not audit_passed and now < finished + params.audit_window:
        raise AuditWindowOpen(f"job {job.id} is held until {finished + params.audit_window}",
                              release_at=finished + params.audit_window)
    new = _advance(job, "settle", JobState.SETTLED)
    postings = settle_postings(job, audit_fee_bps)
    agreed = (AuditVerdictReached(at=now, job_id=job.id, verdict=str(Verdict.AGREED),
                                  node=job.node or "", auditor=""),) if audit_passed else ()
    return Transition(new, (*agreed, settled_event(new, postings, now)), postings)


def settle_replica(run: Job, now: int, *, agrees: bool) -> Transition:
    """Settle a held replica the client paid for, once the verdict is in.

    A run whose outputs agree with the winning result is paid like any job (node, treasury,
    stakers, the rest back to the client); one that disagrees is refunded to the client
    whole and its runner gets nothing.

    >>> from nosgrid.core.jobs.state import Job
    >>> r = Job("r", "c", "m", "h", 10, 1_000, 100, 500, seconds_used=4, node="n",
    ...         state=JobState.VERIFYING)
    >>> [(p.dst, p.amount) for p in settle_replica(r, 9, agrees=True).postings]
    [('wallet:n', 380), ('treasury', 20), ('wallet:c', 600)]
    >>> [(p.dst, p.amount) for p in settle_replica(r, 9, agrees=False).postings]
    [('wallet:c', 1000)]
    """
    if agrees:
        return settle(run, now)
    new = _advance(run, "settle", JobState.SETTLED, Outcome.REJECTED)
    postings = (Posting(escrow(run.id), wallet(run.client), run.deposit),) if run.deposit else ()
    return Transition(new, (settled_event(new, postings, now),), postings)


def settle_run(run: Job, now: int, *, returned_to: str, held: int, of_job: str) -> Transition:
    """Settle a verification run that pays nobody now: its escrow (``held``) goes back to
    ``returned_to`` (``audit_pool``, or the ``replicas:`` reserve of the job it checks);
    its runner is paid from the pool once the verdict is in.

    >>> from nosgrid.core.jobs.state import Job
    >>> r = Job("r", "c", "m", "h", 10, 1_000, 100, 500, node="n", state=JobState.COMPLETED)
    >>> [(p.dst, p.amount) for p in settle_run(r, 9, returned_to="audit_pool", held=1_000,
    ...                                        of_job="j").postings]
    [('audit_pool', 1000)]
    """
    new = _advance(run, "settle", JobState.SETTLED)
    postings = (Posting(escrow(run.id), returned_to, held),) if held else ()
    ev = RunSettled(at=now, job_id=run.id, of_job=of_job, returned_to=returned_to, amount=held)
    return Transition(new, (ev,), postings)


def open_dispute(job: Job, now: int, auditor: str) -> Transition:
    """verifying → disputed: the audit run's output differs from the node's."""
    new = _advance(job, "dispute", JobState.DISPUTED)
    return Transition(new, (JobDisputed(at=now, job_id=job.id, auditor=auditor),))


def _pay_runs(runners: Sequence[str], each: int, pool_balance: int) -> list[Posting]:
    out, left = [], pool_balance
    for r in runners:
        amt = min(each, left)
        if amt > 0:
            out.append(Posting(AUDIT_POOL, wallet(r), amt))
            left -= amt
    return out


@dataclass(frozen=True, slots=True)
class DisputeSettlement:
    """The settled job and its postings, plus the slash commands for ``slashing.slash``."""

    transition: Transition
    slashes: tuple[SlashNode, ...] = ()
    postings: tuple[Posting, ...] = field(default=())


def settle_dispute(job: Job, outcome: DisputeOutcome, *, auditor: str,
                   tiebreakers: Sequence[str], verdict_entry_hash: str, now: int,
                   audit_fee_bps: int, pool_balance: int,
                   auditor_paid_by_client: bool = False) -> DisputeSettlement:
    """Settle a disputed job per the verdict (record the verdict entry first; cite its hash).

    * ``node_wrong``: full refund to the client; the node is slashed for ``wrong_result``
      with the auditor as challenger; auditor and panel are paid from ``audit_pool``.
    * ``auditor_wrong``: the node is paid as usual; the auditor is slashed (the node is
      the challenger) and unpaid; the panel is paid.
    * ``inconclusive``: the node is paid, auditor and panel are paid, nobody is slashed.

    Audit runs are paid the job's gross each, as far as ``pool_balance`` goes; an auditor
    whose run the client paid for (a replica) is paid from that run's own escrow instead
    (``settle_replica``), so the pool pays only the panel.
    """
    if job.node is None:
        raise InvalidInput(f"job {job.id} has no node to settle")
    rejected = outcome.verdict is Verdict.NODE_WRONG
    new = _advance(job, "settle", JobState.SETTLED, Outcome.REJECTED if rejected else None)
    each = gross_pay(job)
    pooled_auditor = [] if auditor_paid_by_client else [auditor]
    evidence = Evidence(journal_hash=verdict_entry_hash, job_id=job.id)
    slashes: tuple[SlashNode, ...] = ()
    if outcome.verdict is Verdict.NODE_WRONG:
        postings = [Posting(escrow(job.id), wallet(job.client), job.deposit)] if job.deposit else []
        postings += _pay_runs([*pooled_auditor, *tiebreakers], each, pool_balance)
        slashes = (SlashNode(job.node, Offence.WRONG_RESULT, evidence, now, each, auditor),)
    elif outcome.verdict is Verdict.AUDITOR_WRONG:
        postings = [*settle_postings(job, audit_fee_bps),
                    *_pay_runs(tiebreakers, each, pool_balance)]
        slashes = (SlashNode(auditor, Offence.WRONG_RESULT, evidence, now, each, job.node),)
    elif outcome.verdict is Verdict.INCONCLUSIVE:
        postings = [*settle_postings(job, audit_fee_bps),
                    *_pay_runs([*pooled_auditor, *tiebreakers], each, pool_balance)]
    else:
        raise InvalidInput("an agreed audit is settled with release_held, not as a dispute")
    verdict = AuditVerdictReached(at=now, job_id=job.id, verdict=str(outcome.verdict),
                                  node=job.node, auditor=auditor, panel=tuple(tiebreakers),
                                  votes_first=outcome.votes_first,
                                  votes_audit=outcome.votes_audit)
    booked = tuple(postings)
    events = (verdict, settled_event(new, booked, now))
    return DisputeSettlement(Transition(new, events, booked), slashes, booked)
