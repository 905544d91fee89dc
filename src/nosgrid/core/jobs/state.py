"""The job lifecycle: an explicit transition table and one pure function per transition.

::

    queued ──assign──► assigned ──start──► running ──complete──► completed ─┐
      ▲  │                │  │               │  │                          │
      │  └──cancel──┐     │  └─requeue─┐     │  ├──fail──────► failed ─────┤
      └─────────────┼─────┴────────────┘◄────┘  ├──time_out──► timed_out ──┼─settle─► settled
                    ▼                           └──cancel────► cancelled ──┘
                 cancelled        (completed ──► verifying ──► disputed: audits)

Each function takes the job, the market terms it was posted under and ``now`` (unix
seconds, passed in) and returns a :class:`Transition`: the new job, events in the past
tense and the ledger postings the step implies. Only ``post`` and ``settle`` move money.

Who pays for what (the rule, and why):

* **post**: the deposit is ``price_per_second × timeout`` capped by ``max_price``; it
  moves from the client's wallet into the job's escrow.
* **completed**: the node earns ``price_per_second × seconds used`` (never above the
  deposit); the treasury takes ``fee_bps`` of that, the node gets the rest; the unused
  deposit goes back to the client.
* **cancelled**: before the job starts, a full refund. While running, the client pays
  for the seconds used so far, like completion: the node did that work on request.
* **failed / timed_out with fault "client"** (the job's own program exited non-zero,
  was killed for exceeding its memory, or ran past its timeout): the client pays for
  the seconds used, as with any cloud machine. The node delivered the compute.
* **failed / timed_out with fault "node"** (image pull error, node crash, node vanished,
  coordinator-detected deadline with no report): full refund; the node is paid nothing,
  and the staking rules may slash it.

Every transition that ends a run (or gives the job back to the queue) sets the job's
:class:`Outcome`: how that run ended, in one word. Reputation, emissions, compute seconds
and the CLI read the outcome; ``reason`` is free text for people only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from nosgrid.core.errors import IllegalTransition, InvalidInput
from nosgrid.core.events import (
    Event,
    Fault,
    JobAssigned,
    JobCancelled,
    JobCompleted,
    JobExtended,
    JobFailed,
    JobPosted,
    JobRequeued,
    JobSettled,
    JobStarted,
    JobTimedOut,
)
from nosgrid.core.jobs.terms import JobTerms
from nosgrid.core.ledger import (
    AUDIT_POOL,
    STAKERS_POOL,
    TREASURY,
    Posting,
    escrow,
    replica_reserve,
    wallet,
)
from nosgrid.core.markets import MarketParams
from nosgrid.core.money import bps_of


class JobState(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    VERIFYING = "verifying"
    DISPUTED = "disputed"
    SETTLED = "settled"


S = JobState


class Outcome(StrEnum):
    """How the job's last run ended (None while it has not ended yet)."""

    COMPLETED = "completed"  # the node delivered a result
    SPEC_FAILED = "spec_failed"  # the job's own program failed (the client's fault; billed)
    TIMED_OUT = "timed_out"  # the job ran past its timeout (the client's fault; billed)
    NODE_FAILED = "node_failed"  # the node could not or would not run it (refunded)
    NODE_SILENT = "node_silent"  # the node stopped reporting: no result by the deadline
    CANCELLED = "cancelled"  # the client cancelled it
    REQUEUED = "requeued"  # its node vanished; the job is back in the queue
    WITHDRAWN = "withdrawn"  # a verification run the coordinator took back
    REJECTED = "rejected"  # the result was judged wrong (a dispute, a disagreeing replica)

    @property
    def node_delivered(self) -> bool | None:
        """For the node's reputation: did it deliver the compute? None: not its doing."""
        if self in (Outcome.COMPLETED, Outcome.SPEC_FAILED, Outcome.TIMED_OUT):
            return True
        if self in (Outcome.NODE_FAILED, Outcome.NODE_SILENT):
            return False
        return None


#: outcomes whose compute seconds count as delivered work (emissions, audit overhead)
DELIVERED_WORK: Final = frozenset({Outcome.COMPLETED})
#: action → states it may start from → the state it leads to
TRANSITIONS: Final[Mapping[str, tuple[frozenset[JobState], JobState | None]]] = {
    "assign": (frozenset({S.QUEUED}), S.ASSIGNED),
    "start": (frozenset({S.ASSIGNED}), S.RUNNING),
    "complete": (frozenset({S.RUNNING}), S.COMPLETED),
    "fail": (frozenset({S.ASSIGNED, S.RUNNING}), S.FAILED),
    "time_out": (frozenset({S.ASSIGNED, S.RUNNING}), S.TIMED_OUT),
    "cancel": (frozenset({S.QUEUED, S.ASSIGNED, S.RUNNING}), S.CANCELLED),
    "extend": (frozenset({S.QUEUED, S.ASSIGNED, S.RUNNING}), None),
    "requeue": (frozenset({S.ASSIGNED, S.RUNNING}), S.QUEUED),
    "verify": (frozenset({S.COMPLETED}), S.VERIFYING),
    "dispute": (frozenset({S.VERIFYING}), S.DISPUTED),
    "settle": (
        frozenset({S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.VERIFYING, S.DISPUTED}),
        S.SETTLED,
    ),
}
#: the run is not over yet: the job waits for, or is with, a node
OPEN: Final = frozenset({S.QUEUED, S.ASSIGNED, S.RUNNING})
#: the run is over and the client has its answer (a result, a failure, a cancellation);
#: ``verifying``/``disputed`` count: the result is in, only the node's pay is held for an
#: audit (docs/verification.md). The one definition the SDK, the CLI and the node use.
ENDED: Final = frozenset(set(S) - OPEN)
#: nothing more happens to the job: its escrow is paid out
TERMINAL: Final = frozenset({S.SETTLED})


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the rules see it. Times are unix seconds; money is base units."""

    id: str
    client: str
    market: str
    spec_hash: str
    timeout: int
    deposit: int
    price_per_second: int
    fee_bps: int
    stakers_share_bps: int = 0
    state: JobState = JobState.QUEUED
    node: str | None = None
    created_at: int = 0
    assigned_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    seconds_used: int = 0
    fault: Fault | None = None
    reason: str = ""
    attempts: int = 0
    result: Mapping[str, Any] = field(default_factory=dict)
    outcome: Outcome | None = None
    #: what it was posted under (None only for jobs built by hand in tests)
    terms: JobTerms | None = None

    @property
    def deadline(self) -> int | None:
        """When a running job must have finished (start + timeout)."""
        return None if self.started_at is None else self.started_at + self.timeout


@dataclass(frozen=True, slots=True)
class Transition:
    job: Job
    events: tuple[Event, ...] = ()
    postings: tuple[Posting, ...] = ()


def _move(job: Job, action: str, now: int, **changes: Any) -> Job:
    allowed, target = TRANSITIONS[action]
    if job.state not in allowed:
        raise IllegalTransition(
            f"cannot {action.replace('_', ' ')} job {job.id}: it is {job.state.value}",
            job_id=job.id,
            state=job.state.value,
            action=action,
        )
    assert target is not None
    return replace(job, state=target, **changes)


def can(job: Job, action: str) -> bool:
    """Whether ``action`` is allowed in the job's current state."""
    return job.state in TRANSITIONS[action][0]


def post(*, job_id: str, client: str, market: MarketParams, spec_hash: str, terms: JobTerms,
         now: int) -> Transition:
    """A client posts a job under ``terms``: escrow its deposit. The caller checks the
    client can pay.

    With ``terms.replicas`` k > 1 the client also reserves k − 1 more deposits for the
    redundant runs (``replicas:<job>``); what the runs do not use is returned when the job
    settles. ``terms.posting_fee`` goes to the treasury at once and is never refunded: it
    is what makes posting (and cancelling) in a loop cost the poster.
    """
    if terms.market != market.name:
        raise InvalidInput(f"the terms name market {terms.market!r}, not {market.name!r}")
    timeout, replicas = terms.timeout, terms.replicas
    if not 1 <= timeout <= market.max_timeout:
        raise InvalidInput(
            f"timeout {timeout}s is outside the market's range 1..{market.max_timeout}s",
            field="timeout",
        )
    deposit = market.deposit_for(timeout, terms.max_price)
    job = Job(
        id=job_id,
        client=client,
        market=market.name,
        spec_hash=spec_hash,
        timeout=timeout,
        deposit=deposit,
        price_per_second=market.price_per_second,
        fee_bps=market.fee_bps,
        stakers_share_bps=market.stakers_share_bps,
        created_at=now,
        terms=terms,
    )
    reserve = deposit * (replicas - 1)
    legs = [(escrow(job_id), deposit), (replica_reserve(job_id), reserve),
            (TREASURY, terms.posting_fee)]
    postings = tuple(Posting(wallet(client), dst, amt) for dst, amt in legs if amt > 0)
    ev = JobPosted(at=now, job_id=job_id, client=client, market=market.name, deposit=deposit,
                   replica_reserve=reserve, posting_fee=terms.posting_fee)
    return Transition(job, (ev,), postings)


def assign(job: Job, node: str, now: int) -> Transition:
    new = _move(job, "assign", now, node=node, assigned_at=now, attempts=job.attempts + 1)
    return Transition(new, (JobAssigned(at=now, job_id=job.id, node=node),))


def start(job: Job, now: int) -> Transition:
    new = _move(job, "start", now, started_at=now)
    return Transition(new, (JobStarted(at=now, job_id=job.id, node=job.node or ""),))


def _seconds_used(job: Job, now: int, reported: int | None) -> int:
    """Seconds to bill: what the node reports, bounded by wall time since start and timeout."""
    if job.started_at is None:
        return 0
    wall = max(0, now - job.started_at)
    used = wall if reported is None else min(max(0, reported), wall + 1)
    return min(used, job.timeout)


def complete(job: Job, now: int, seconds_used: int | None = None,
             result: Mapping[str, Any] | None = None) -> Transition:
    used = _seconds_used(job, now, seconds_used)
    new = _move(job, "complete", now, finished_at=now, seconds_used=used,
                result=dict(result or {}), outcome=Outcome.COMPLETED, reason="")
    return Transition(new, (JobCompleted(at=now, job_id=job.id, node=job.node or "",
                                         seconds_used=used),))


def fail(job: Job, now: int, *, fault: Fault, reason: str,
         seconds_used: int | None = None) -> Transition:
    used = _seconds_used(job, now, seconds_used) if fault == "client" else 0
    new = _move(job, "fail", now, finished_at=now, seconds_used=used, fault=fault,
                reason=reason[:500],
                outcome=Outcome.SPEC_FAILED if fault == "client" else Outcome.NODE_FAILED)
    return Transition(new, (JobFailed(at=now, job_id=job.id, node=job.node or "", fault=fault,
                                      reason=new.reason),))


def time_out(job: Job, now: int, *, fault: Fault) -> Transition:
    used = job.timeout if (fault == "client" and job.started_at is not None) else 0
    client = fault == "client"
    new = _move(job, "time_out", now, finished_at=now, seconds_used=used, fault=fault,
                reason="the job ran past its timeout" if client
                else "the node did not report before the deadline",
                outcome=Outcome.TIMED_OUT if client else Outcome.NODE_SILENT)
    return Transition(new, (JobTimedOut(at=now, job_id=job.id, node=job.node or "",
                                        fault=fault),))


def cancel(job: Job, now: int, reason: str = "cancelled by the client", *,
           outcome: Outcome = Outcome.CANCELLED, billed_until: int | None = None) -> Transition:
    """The client cancels (or, with ``outcome=WITHDRAWN``, the coordinator takes back a
    verification run); a running job pays for the seconds used so far, or only up to
    ``billed_until`` (a deployment's replica that failed its health checks then: the node
    is paid for healthy time only)."""
    until = now if billed_until is None else max(min(billed_until, now), job.started_at or now)
    used = _seconds_used(job, until, None) if job.state is S.RUNNING else 0
    new = _move(job, "cancel", now, finished_at=now, seconds_used=used, reason=reason,
                outcome=outcome)
    return Transition(new, (JobCancelled(at=now, job_id=job.id, reason=reason),))


def extend(job: Job, market: MarketParams, seconds: int, now: int) -> Transition:
    """Give an open job ``seconds`` more: its timeout (and deadline) grows, and the escrow
    by the job's price × ``seconds`` (the caller checks the client can pay). One extension
    is at most the market's ``max_timeout``; an ended job cannot be extended."""
    if not can(job, "extend"):
        raise IllegalTransition(f"job {job.id} is already {job.state.value}; only a queued, "
                                "assigned or running job can be extended")
    if not 1 <= seconds <= market.max_timeout:
        raise InvalidInput(f"extend by 1..{market.max_timeout} s at a time (the market's "
                           "longest job)", field="seconds")
    added = job.price_per_second * seconds
    new = replace(job, timeout=job.timeout + seconds, deposit=job.deposit + added,
                  terms=None if job.terms is None
                  else replace(job.terms, timeout=job.terms.timeout + seconds))
    ev = JobExtended(at=now, job_id=job.id, seconds=seconds, added_deposit=added,
                     timeout=new.timeout)
    postings = (Posting(wallet(job.client), escrow(job.id), added),) if added else ()
    return Transition(new, (ev,), postings)


def requeue(job: Job, now: int, reason: str) -> Transition:
    """Give the job back to the queue (its node vanished); the escrow stays."""
    new = _move(job, "requeue", now, node=None, assigned_at=None, started_at=None,
                reason=reason, outcome=Outcome.REQUEUED)
    return Transition(new, (JobRequeued(at=now, job_id=job.id, node=job.node or "",
                                        market=job.market, reason=reason),))


@dataclass(frozen=True, slots=True)
class Payout:
    """How a job's deposit is split when it settles."""

    node_pay: int
    treasury_fee: int
    stakers_fee: int
    refund: int

    @property
    def total(self) -> int:
        return self.node_pay + self.treasury_fee + self.stakers_fee + self.refund


def payout(job: Job) -> Payout:
    """Split the deposit per the rules in the module docstring."""
    gross = min(job.price_per_second * job.seconds_used, job.deposit)
    if (job.state in (S.FAILED, S.TIMED_OUT) and job.fault != "client") or job.node is None \
            or job.outcome is Outcome.REJECTED:  # a result judged wrong is not paid
        gross = 0
    fee = bps_of(gross, job.fee_bps)
    stakers = bps_of(fee, job.stakers_share_bps)
    return Payout(gross - fee, fee - stakers, stakers, job.deposit - gross)


def settled_event(job: Job, postings: tuple[Posting, ...], now: int) -> JobSettled:
    """The ``JobSettled`` of ``job`` (already in its settled state) paid by ``postings``:
    what left the escrow, by destination."""
    moved: dict[str, int] = {}
    for p in postings:
        if p.src == escrow(job.id):
            moved[p.dst] = moved.get(p.dst, 0) + p.amount
    node = wallet(job.node) if job.node else ""
    return JobSettled(at=now, job_id=job.id, job=job, node_pay=moved.get(node, 0),
                      treasury_fee=moved.get(TREASURY, 0), stakers_fee=moved.get(STAKERS_POOL, 0),
                      audit_fee=moved.get(AUDIT_POOL, 0), refund=moved.get(wallet(job.client), 0))


def settle(job: Job, now: int, stakers_account: str = STAKERS_POOL) -> Transition:
    """Pay out a finished job from its escrow: node, treasury, stakers, client refund."""
    pay = payout(job)
    new = _move(job, "settle", now)
    src = escrow(job.id)
    legs = [
        (wallet(job.node) if job.node else None, pay.node_pay),
        (TREASURY, pay.treasury_fee),
        (stakers_account, pay.stakers_fee),
        (wallet(job.client), pay.refund),
    ]
    postings = tuple(Posting(src, dst, amt) for dst, amt in legs if dst and amt > 0)
    return Transition(new, (settled_event(new, postings, now),), postings)
