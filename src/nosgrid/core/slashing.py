"""Slashing: penalties for provable offences, paid out of the stake vault, and jail.

nosgrid slashes only on evidence already recorded by the protocol: every
:class:`SlashNode` carries an :class:`Evidence` with the hash of the journal entry that
recorded the fault (the audit verdict, the timeout) and/or the job id. A slash without
evidence is refused (:class:`MissingEvidence`); an equivocation's evidence is the two
reports' hashes instead.

The table (defaults, :data:`SLASHING_TABLE`)::

    offence              stake slashed       floor            challenger  strikes
    wrong_result         50% (5000 bps)      10 × job price   50%         3 (jail now)
    abandoned_job        2%  (200 bps)       1 × job price    0           1
    missed_deadline      1%  (100 bps)       1 × job price    0           1
    missed_heartbeats    0.5% (50 bps)       none             0           1
    equivocation         20% (2000 bps)      none             0           3 (jail now)

An ``equivocation`` is a price reporter's: two different signed prices for one market
and epoch (``core/pricing.py``); its evidence names both reports' hashes.

The slash is ``min(vault, max(stake × bps, floor × job price))``. The challenger's part
goes ``stake:<k>`` → ``wallet:<challenger>``, the rest ``stake:<k>`` → ``treasury``. A
client whose result was wrong is refunded from the job's **escrow** by the job rules,
never from the stake. A node whose remaining active stake is under a market's
``min_stake`` leaves that market (:func:`must_leave_market`). Strikes within a window
(3 in 7 days by default) jail the node: 7 days, doubling with each jailing up to 90.

>>> slash_amount(1_000_000_000, Offence.WRONG_RESULT, job_price=200_000_000)
1000000000
>>> slash_amount(1_000_000_000, Offence.MISSED_HEARTBEATS, job_price=0)
5000000
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

from nosgrid.core.errors import InvalidInput
from nosgrid.core.events import Event, NodeJailed, NodeSlashed
from nosgrid.core.ledger import TREASURY, Posting, stake_vault, wallet
from nosgrid.core.markets import MarketParams
from nosgrid.core.money import bps_of
from nosgrid.core.staking import RewardPool, StakeAccount, reduce_stake

DAY: Final = 86_400
_HASH_RE: Final = re.compile(r"^[0-9a-f]{64}$")


class MissingEvidence(InvalidInput):
    code = "missing_evidence"
    default_message = "A slash needs evidence: the journal entry hash and/or the job id."


class Offence(StrEnum):
    WRONG_RESULT = "wrong_result"  # an audit proved the result wrong
    ABANDONED_JOB = "abandoned_job"  # took a job and dropped it (node-fault failure)
    MISSED_DEADLINE = "missed_deadline"  # no result by the job's deadline
    MISSED_HEARTBEATS = "missed_heartbeats"  # went silent while assigned
    EQUIVOCATION = "equivocation"  # a price reporter signed two prices for one epoch
    #: a unanimous inference audit panel found gateway answers that the claimed model files
    #: (or the billed usage) could not have produced (issue 14)
    WRONG_INFERENCE = "wrong_inference"


@dataclass(frozen=True, slots=True)
class Penalty:
    """One row of the slashing table."""

    stake_bps: int
    job_price_multiple: int
    challenger_bps: int
    strikes: int
    needs_journal_hash: bool = False
    #: the evidence is two signed reports (their hashes), not a job
    needs_reports: bool = False
    #: the evidence is usage-record hashes and the journal entry that drew their audit
    needs_records: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.stake_bps <= 10_000 and 0 <= self.challenger_bps <= 10_000):
            raise InvalidInput("penalty basis points must be within 0..10000")
        if self.job_price_multiple < 0 or self.strikes < 0:
            raise InvalidInput("penalty multiples and strikes must be >= 0")


SLASHING_TABLE: Final[Mapping[Offence, Penalty]] = {
    Offence.WRONG_RESULT: Penalty(5_000, 10, 5_000, 3, needs_journal_hash=True),
    Offence.ABANDONED_JOB: Penalty(200, 1, 0, 1),
    Offence.MISSED_DEADLINE: Penalty(100, 1, 0, 1),
    Offence.MISSED_HEARTBEATS: Penalty(50, 0, 0, 1),
    Offence.EQUIVOCATION: Penalty(2_000, 0, 0, 3, needs_reports=True),
    Offence.WRONG_INFERENCE: Penalty(5_000, 0, 0, 3, needs_records=True),
}


@dataclass(frozen=True, slots=True)
class SlashingParams:
    """The table plus the jail rule."""

    table: Mapping[Offence, Penalty] = field(default_factory=lambda: dict(SLASHING_TABLE))
    jail_strikes: int = 3
    strike_window: int = 7 * DAY
    jail_seconds: int = 7 * DAY
    max_jail_seconds: int = 90 * DAY

    def __post_init__(self) -> None:
        if set(self.table) != set(Offence):
            raise InvalidInput("the slashing table must have a row for every offence")
        if self.jail_strikes < 1 or min(self.strike_window, self.jail_seconds) < 0:
            raise InvalidInput("jail_strikes >= 1 and non-negative durations are required")
        if self.max_jail_seconds < self.jail_seconds:
            raise InvalidInput("max_jail_seconds must be >= jail_seconds")


DEFAULT_SLASHING: Final = SlashingParams()


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where the fault is recorded: a journal entry hash (sha256 hex) and/or a job id, or
    (an equivocation) the hashes of the two conflicting signed reports."""

    journal_hash: str = ""
    job_id: str = ""
    reports: tuple[str, ...] = ()
    #: usage records an inference audit panel faulted (sha256 hex each)
    records: tuple[str, ...] = ()

    def check(self, penalty: Penalty) -> None:
        if penalty.needs_records:
            if not self.records or not all(_HASH_RE.match(h) for h in self.records) or not (
                    _HASH_RE.match(self.journal_hash)):
                raise MissingEvidence("an inference slash needs the faulted usage records' "
                                      "hashes and the audit's journal entry hash")
            return
        if penalty.needs_reports or self.reports:
            if (len(set(self.reports)) != 2
                    or not all(_HASH_RE.match(h) for h in self.reports)):
                raise MissingEvidence("an equivocation slash needs the sha256 hashes of both "
                                      "conflicting reports")
            if penalty.needs_reports:
                return
        if not self.journal_hash and not self.job_id:
            raise MissingEvidence("refusing to slash without evidence (journal hash or job id)")
        if self.journal_hash and not _HASH_RE.match(self.journal_hash):
            raise MissingEvidence(f"journal hash {self.journal_hash!r} is not a sha256 hex")
        if penalty.needs_journal_hash and not (self.journal_hash and self.job_id):
            raise MissingEvidence("this offence needs the audit's journal entry hash and job id")

    @property
    def ref(self) -> str:
        if self.records:
            return "records:" + ",".join(self.records)
        if self.reports:
            return "reports:" + ",".join(self.reports)
        return self.journal_hash or f"job:{self.job_id}"


@dataclass(frozen=True, slots=True)
class SlashNode:
    """Command: penalise ``node`` for ``offence``; ``job_price`` sets the floor."""

    node: str
    offence: Offence
    evidence: Evidence
    now: int
    job_price: int = 0
    challenger: str | None = None


@dataclass(frozen=True, slots=True)
class OffenceHistory:
    """A node's recent strikes and jail state (one row per node)."""

    strikes: tuple[tuple[int, int], ...] = ()  # (at, strikes)
    jailed_until: int = 0
    jail_count: int = 0
    offences: int = 0

    def jailed(self, now: int) -> bool:
        """Is the node in jail at ``now``? A jailed node gets no jobs."""
        return now < self.jailed_until


@dataclass(frozen=True, slots=True)
class SlashResult:
    pool: RewardPool
    account: StakeAccount
    history: OffenceHistory
    amount: int
    events: tuple[Event, ...] = ()
    postings: tuple[Posting, ...] = ()


def slash_amount(
    vault: int, offence: Offence, job_price: int = 0,
    params: SlashingParams = DEFAULT_SLASHING,
) -> int:
    """``min(vault, max(vault × bps, multiple × job_price))`` — never more than the vault."""
    if vault < 0 or job_price < 0:
        raise InvalidInput("vault and job price must be >= 0")
    p = params.table[offence]
    return min(vault, max(bps_of(vault, p.stake_bps), p.job_price_multiple * job_price))


def record_strikes(
    history: OffenceHistory, strikes: int, now: int,
    params: SlashingParams = DEFAULT_SLASHING,
) -> OffenceHistory:
    """Add strikes at ``now``; enough within the window jails the node (escalating).

    >>> h = OffenceHistory()
    >>> for t in (0, 100, 200):
    ...     h = record_strikes(h, 1, t)
    >>> h.jailed(201), h.jailed_until
    (True, 605000)
    """
    recent = tuple((t, n) for t, n in history.strikes if now - t < params.strike_window)
    recent += ((now, strikes),)
    hist = replace(history, strikes=recent, offences=history.offences + 1)
    if sum(n for _, n in recent) < params.jail_strikes:
        return hist
    term = min(params.jail_seconds * 2**history.jail_count, params.max_jail_seconds)
    return replace(hist, strikes=(), jailed_until=max(history.jailed_until, now + term),
                   jail_count=history.jail_count + 1)


def slash(
    pool: RewardPool,
    account: StakeAccount,
    history: OffenceHistory,
    cmd: SlashNode,
    params: SlashingParams = DEFAULT_SLASHING,
) -> SlashResult:
    """Apply a :class:`SlashNode`: postings out of ``stake:<node>``, new score, strikes.

    >>> from nosgrid.core.staking import stake
    >>> r = stake(RewardPool(), None, "n1", 100_000_000, 30, now=0)
    >>> ev = Evidence(journal_hash="ab" * 32, job_id="j1")
    >>> s = slash(r.pool, r.account, OffenceHistory(),
    ...           SlashNode("n1", Offence.WRONG_RESULT, ev, now=5, job_price=1, challenger="aud"))
    >>> s.amount, [(p.dst, p.amount) for p in s.postings], s.history.jailed(6)
    (50000000, [('wallet:aud', 25000000), ('treasury', 25000000)], True)
    """
    if account.owner != cmd.node:
        raise InvalidInput(f"stake of {account.owner} given to slash {cmd.node}")
    penalty = params.table[cmd.offence]
    cmd.evidence.check(penalty)
    if cmd.challenger == cmd.node:
        raise InvalidInput("a node cannot be the challenger of its own slash")
    amount = slash_amount(account.amount, cmd.offence, cmd.job_price, params)
    pool, acct = reduce_stake(pool, account, amount)
    to_challenger = bps_of(amount, penalty.challenger_bps) if cmd.challenger else 0
    vault = stake_vault(cmd.node)
    legs = [(wallet(cmd.challenger) if cmd.challenger else "", to_challenger),
            (TREASURY, amount - to_challenger)]
    postings = tuple(Posting(vault, dst, amt) for dst, amt in legs if dst and amt > 0)
    hist = record_strikes(history, penalty.strikes, cmd.now, params)
    events: list[Event] = [NodeSlashed(
        at=cmd.now, node=cmd.node, offence=str(cmd.offence), amount=amount,
        evidence=cmd.evidence.ref, job_id=cmd.evidence.job_id, to_challenger=to_challenger,
        remaining=acct.amount)]
    if hist.jailed_until > history.jailed_until:
        events.append(NodeJailed(at=cmd.now, node=cmd.node, until=hist.jailed_until,
                                 count=hist.jail_count))
    return SlashResult(pool, acct, hist, amount, tuple(events), postings)


def must_leave_market(account: StakeAccount | None, market: MarketParams) -> bool:
    """True when the node's active stake no longer meets ``market.min_stake``.

    >>> must_leave_market(StakeAccount("n", amount=5), MarketParams(name="m",
    ...                   price_per_second=1, min_stake=10))
    True
    """
    stake_now = account.market_stake if account is not None else 0
    return stake_now < market.min_stake


def may_take_jobs(
    account: StakeAccount | None, history: OffenceHistory, market: MarketParams, now: int
) -> bool:
    """Gate for the matcher: enough active stake for the market and not in jail."""
    return not must_leave_market(account, market) and not history.jailed(now)
