"""What the dashboard's API routes answer (the SDK and CLI read the same models).

Kept apart from :mod:`nosgrid.core.views` because they are read-only figures the web
dashboard shows; ``nosgrid.sdk.models`` re-exports them too. Money is integer base units
with ``*_nos`` strings for display, as everywhere in the API.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nosgrid.core.markets import HardwareReport
from nosgrid.core.views import View

__all__ = [
    "AccountBalance", "AccountList", "AllocationRow", "AnchorView", "DayEarnings",
    "EmissionPoint", "JobValidation", "LedgerEntryView", "LedgerPage", "MarketStats",
    "NodeList", "NodeQueuePosition", "NodeStats", "NodeSummary", "TokenomicsView",
]


class MarketStats(View):
    """A market's queue and recent throughput (jobs that ended in the window)."""

    market: str
    queue_length: int
    running: int
    nodes_online: int
    nodes_waiting: int
    finished_1h: int
    finished_24h: int
    gpu_seconds_24h: int
    jobs_by_state: dict[str, int] = Field(default_factory=dict)


class DayEarnings(View):
    #: the UTC midnight (unix seconds) that starts the day
    day: int
    earned: int
    earned_nos: str


class NodeQueuePosition(View):
    """Where the node stands among the idle nodes of a market when a job comes in: its
    ``position`` (1: likeliest) by the matcher's share, or None when it is not waiting."""

    market: str
    position: int | None = None
    waiting: int
    share: float = 0.0
    queued_jobs: int
    why: str = ""


class NodeStats(View):
    """The figures of a node's page: uptime, earnings by day, queue positions, jobs run."""

    node_id: str
    uptime_24h: float
    uptime_7d: float
    earnings: list[DayEarnings]
    earned_total: int
    earned_total_nos: str
    jobs_by_state: dict[str, int] = Field(default_factory=dict)
    jobs_run: int
    audits_passed: int
    audit_faults: int
    slashes: int
    queue: list[NodeQueuePosition] = Field(default_factory=list)


class NodeSummary(View):
    id: str
    status: str
    markets: list[str]
    hardware: HardwareReport
    stake: int
    stake_nos: str
    reputation: float
    jobs_done: int
    offences: int


class NodeList(View):
    """A page of the nodes (online first, best reputation first) and the counts of all."""

    nodes: list[NodeSummary]
    online: int
    total: int
    #: pass as ``offset`` for the next page; None on the last
    next: int | None = None


class LedgerEntryView(View):
    """A journal entry with what its hash covers, so anyone can recompute it;
    ``hash_ok``: the coordinator recomputed it and it matches, and ``prev_hash`` is the
    hash of the entry before."""

    seq: int
    kind: str
    ref: str
    at: int
    #: ``[src, dst, amount]`` each
    postings: list[list[Any]]
    prev_hash: str
    meta: dict[str, Any] = Field(default_factory=dict)
    hash: str
    hash_ok: bool
    links_ok: bool


class AnchorView(View):
    """The ledger's root recorded on chain (the Memo program) up to ``seq``."""

    seq: int | None = None
    entry_hash: str
    status: str
    signature: str | None = None


class LedgerPage(View):
    """Journal entries from ``from_seq`` on, oldest first; ``next``: the next page's
    ``from_seq`` (None on the last)."""

    entries: list[LedgerEntryView]
    next: int | None = None
    head_seq: int | None = None
    head_hash: str | None = None
    anchors: list[AnchorView] = Field(default_factory=list)
    settlement: str


class AccountBalance(View):
    name: str
    balance: int
    balance_nos: str


class AccountList(View):
    accounts: list[AccountBalance]


class AllocationRow(View):
    account: str
    share_bps: int
    amount: int
    amount_nos: str
    cliff_months: float | None = None
    vesting_months: float | None = None


class EmissionPoint(View):
    epoch: int
    release: int
    cumulative: int
    release_nos: str


class TokenomicsView(View):
    """Supply, genesis allocation, the emission curve and what was emitted so far."""

    total_supply: int
    total_supply_nos: str
    allocation: list[AllocationRow]
    epoch_seconds: int
    emission_decay_bps: int
    emission: list[EmissionPoint]
    #: the last epoch the coordinator emitted (-1 before the first)
    last_epoch: int
    emitted: int
    emitted_nos: str
    rewards_pool: int
    treasury: int


class JobValidation(View):
    """``nosgrid job validate`` for one definition: valid, or the errors it names."""

    valid: bool
    errors: list[str] = Field(default_factory=list)
    ops: int | None = None
    spec_hash: str | None = None
