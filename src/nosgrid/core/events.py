"""Domain events: what happened, in the past tense, as small frozen values.

The rules return them (a :class:`~nosgrid.core.jobs.state.Transition` carries the events of
one job transition, a staking or slashing result those of one command); the service layer
publishes them on its unit of work, which runs the handlers registered for each type in
``coordinator/bootstrap.py``: inside the transaction when they move money (the settlement
backend's payouts, stakers' fees, reputation), after the commit when they only notify
(waking a node, a log follower, metrics). ``docs/architecture.md`` lists who handles what.

An event that was recorded with ledger postings carries the journal entry that holds them
(``entry``, set when the service books the postings), so a handler that pays out on chain
can cite it.

>>> ev = JobAssigned(at=10, job_id="j1", node="n1")
>>> ev.name, ev.entry is None
('JobAssigned', True)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Self

if TYPE_CHECKING:
    from nosgrid.core.jobs.state import Job
    from nosgrid.core.ledger import JournalEntry

Fault = Literal["client", "node"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: when it happened, and the journal entry that booked it."""

    at: int
    entry: JournalEntry | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def booked(self, entry: JournalEntry) -> Self:
        """The same event, citing the journal entry that recorded its postings."""
        return replace(self, entry=entry)


# --------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent(Event):
    job_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPosted(JobEvent):
    client: str
    market: str
    deposit: int
    replica_reserve: int = 0
    #: the market's non-refundable fee, to the treasury (its journal ``entry`` is set)
    posting_fee: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueued(JobEvent):
    """The job waits in its market's queue for the next node that asks for work."""

    market: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobAssigned(JobEvent):
    node: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStarted(JobEvent):
    node: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCompleted(JobEvent):
    node: str
    seconds_used: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed(JobEvent):
    node: str
    fault: Fault
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTimedOut(JobEvent):
    node: str
    fault: Fault


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelled(JobEvent):
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobExtended(JobEvent):
    """The client gave the job ``seconds`` more (its ``timeout`` now); ``added_deposit``
    moved into the escrow (its journal ``entry`` is set). The node reads the new timeout
    from the job and keeps the container running."""

    seconds: int
    added_deposit: int
    timeout: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequeued(JobEvent):
    """The job's node vanished; the job is queued again in ``market`` (its escrow stays)."""

    node: str
    market: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobHeldForAudit(JobEvent):
    release_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDisputed(JobEvent):
    auditor: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSettled(JobEvent):
    """The job's escrow was paid out; the amounts are what the settle postings moved."""

    job: Job
    node_pay: int = 0
    treasury_fee: int = 0
    stakers_fee: int = 0
    audit_fee: int = 0
    refund: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSettled(JobEvent):
    """A verification run ended: its escrow went back to ``returned_to`` (the audit pool,
    or the reserve of the job whose client paid for replicas)."""

    of_job: str
    returned_to: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditVerdictReached(JobEvent):
    verdict: str
    node: str
    auditor: str
    panel: tuple[str, ...] = ()
    votes_first: int = 0
    votes_audit: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRunnersPaid(JobEvent):
    """The audit pool paid the runners of an audit of ``job_id``."""

    runners: tuple[str, ...]
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaReserveReturned(JobEvent):
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptIssued(JobEvent):
    """The market signed a result receipt for the job (``core.receipts``); ``receipt_id``
    is its row, ``verdict`` its label (``held`` first for a job held for audit)."""

    receipt_id: int
    verdict: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestorRotated(Event):
    """A new attestor key epoch was recorded (epoch 0: the market's first key)."""

    epoch: int
    key: str
    signature: str = ""


# --------------------------------------------------------------------- markets and nodes


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketCreated(Event):
    """A new market exists: the nodes that qualify for it (and did not pin others) join."""

    market: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeMarketsChanged(Event):
    """The markets ``node`` serves changed (registration, a new market, its stake moved)."""

    node: str
    markets: tuple[str, ...]
    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()


# --------------------------------------------------------------------- price oracle


@dataclass(frozen=True, slots=True, kw_only=True)
class OraclePricePublished(Event):
    """A closed oracle epoch's price of ``market`` (or ``nos_usd``) was published; None:
    too few fresh independent sources (the market shows its configured price)."""

    market: str
    epoch: int
    price: int | None
    sources: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportEquivocated(Event):
    """Reporter key ``source`` signed two prices for ``market`` in ``epoch``; its
    ``operator`` is slashed (``NodeSlashed`` follows) with both reports' hashes."""

    source: str
    operator: str
    market: str
    epoch: int
    reports: tuple[str, str]


# --------------------------------------------------------------------- stakes


@dataclass(frozen=True, slots=True, kw_only=True)
class StakeEvent(Event):
    owner: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Staked(StakeEvent):
    amount: int
    days: int
    score: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StakeToppedUp(StakeEvent):
    amount: int
    score: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StakeExtended(StakeEvent):
    days: int
    score: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Unstaked(StakeEvent):
    amount: int
    unlocked_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Restaked(StakeEvent):
    amount: int
    score: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StakeWithdrawn(StakeEvent):
    amount: int
    remaining: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RewardsClaimed(StakeEvent):
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StakerFeesDistributed(Event):
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSlashed(Event):
    node: str
    offence: str
    amount: int
    evidence: str
    job_id: str
    to_challenger: int = 0
    remaining: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeJailed(Event):
    node: str
    until: int
    count: int


# --------------------------------------------------------------------- economy, gateway


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochEmitted(Event):
    """An emission epoch's release into ``rewards_pool`` and its payout to providers."""

    epoch: int
    released: int
    nodes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageBilled(Event):
    """Gateway tokens served to ``owner``'s API keys were paid out of their holds."""

    owner: str
    requests: int
    tokens: int
