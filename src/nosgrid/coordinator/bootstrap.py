"""The composition root: the one place that picks the store, the settlement backend, the
clock and the notifier, and says which handler runs for which event.

Everything else receives what it needs from here. The table below is the whole list of
side effects of the domain events; ``docs/architecture.md`` explains it::

    event                 in the transaction (moves money,      after commit (notifies)
                          writes state)
    JobPosted             settlement: the posting fee (owner    metrics
                          → treasury), when the market has one
    JobQueued                                                   wake the market's nodes
    JobAssigned                                                 wake the node; metrics
    JobRequeued                                                 wake the market; logs
    JobCompleted/Failed/TimedOut/Cancelled                      log followers; metrics
    JobSettled            settlement payout; stakers' fee and   log followers; sender
                          reputation; unused replicas reserve
    AuditRunnersPaid      settlement: audit vault → runners     sender
    EpochEmitted          settlement: emissions vault → nodes   sender
    Staked/StakeToppedUp/ settlement: stake vault moves         sender
    StakeWithdrawn/
    RewardsClaimed/
    NodeSlashed
    UsageBilled           settlement: owner → nodes, treasury   sender
    MarketCreated         nodes that qualify join it (nodes)
    Staked/StakeToppedUp/ the node joins/leaves markets by
    Unstaked/Restaked/    their minimum stake
    StakeWithdrawn/
    NodeSlashed
    NodeMarketsChanged                                          wake the node's poll
    JobSettled/           sign and store the result receipt
    JobHeldForAudit       (receipts.ReceiptIssuer)
    JobCompleted          a chain request's payer may read its outputs
    ReceiptIssued/        solana: queue its publication         sender
    AttestorRotated

>>> from nosgrid.coordinator.settings import CoordinatorSettings
>>> coord = bootstrap(CoordinatorSettings(db="sqlite://"))
>>> "JobSettled" in coord.store.handlers.table()
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from nosgrid.coordinator.attestor_keys import AttestorKeys
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import audit_runs, chain_requests, economics, nodes
from nosgrid.coordinator.services.receipts import ReceiptIssuer
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.events import (
    AttestorRotated,
    AuditRunnersPaid,
    EpochEmitted,
    Event,
    JobAssigned,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobPosted,
    JobQueued,
    JobRequeued,
    JobSettled,
    JobTimedOut,
    MarketCreated,
    NodeMarketsChanged,
    NodeSlashed,
    ReceiptIssued,
    Restaked,
    RewardsClaimed,
    Staked,
    StakeToppedUp,
    StakeWithdrawn,
    Unstaked,
    UsageBilled,
)
from nosgrid.settlement.backend import ReceiptPublisher, SettlementBackend
from nosgrid.settlement.local import LOCAL
from nosgrid.store.db import Handlers, Store

#: the events whose postings leave or enter a stake or rewards vault
STAKE_MOVES = (Staked, StakeToppedUp, StakeWithdrawn, RewardsClaimed, NodeSlashed)
#: the events that pay keys out of a protocol pool
POOL_PAYOUTS = (AuditRunnersPaid, EpochEmitted)
#: the events after which a staker's stake counts for more or fewer markets
MARKET_STAKE_MOVES = (Staked, StakeToppedUp, Unstaked, Restaked, StakeWithdrawn)


def money_handlers(handlers: Handlers) -> Handlers:
    """The protocol's own in-transaction consequences (any settlement backend)."""
    handlers.on(JobSettled, economics.on_job_settled)
    handlers.on(JobSettled, audit_runs.return_unused_reserve)
    return handlers


def market_handlers(handlers: Handlers) -> Handlers:
    """Which markets each node serves follows new markets and its stake (in the transaction
    that changed them, so a job posted next is matched against the new markets)."""
    handlers.on(MarketCreated, nodes.on_market_created)
    for moved in MARKET_STAKE_MOVES:
        handlers.on(moved, nodes.on_stake_moved)
    handlers.on(NodeSlashed, nodes.on_node_slashed)
    return handlers


def settlement_handlers(handlers: Handlers, backend: SettlementBackend) -> Handlers:
    """Where NOS really moves: ``backend``'s share of each money event, and its wake-up."""
    handlers.on(JobSettled, backend.on_job_settled)
    handlers.on(UsageBilled, backend.on_usage_billed)
    handlers.on(JobPosted, backend.on_job_posted)  # the posting fee, if the market has one
    for stake_move in STAKE_MOVES:
        handlers.on(stake_move, backend.on_stake_moved)
    for pool_payout in POOL_PAYOUTS:
        handlers.on(pool_payout, backend.on_pool_payout)
    for moved in (JobSettled, UsageBilled, JobPosted, *STAKE_MOVES, *POOL_PAYOUTS):
        handlers.after(moved, backend.after_money_moved)
    if isinstance(backend, ReceiptPublisher):  # on chain: receipts and key epochs too
        handlers.on(ReceiptIssued, backend.on_receipt_issued)
        handlers.on(AttestorRotated, backend.on_attestor_rotated)
        for published in (ReceiptIssued, AttestorRotated):
            handlers.after(published, backend.after_money_moved)
    return handlers


#: the job events counted by the ``nosgrid_job_events_total`` metric, and their label
COUNTED: Final[dict[type[Event], str]] = {
    JobPosted: "posted", JobAssigned: "assigned", JobCompleted: "completed",
    JobFailed: "failed", JobTimedOut: "timed_out", JobCancelled: "cancelled"}


class Notifications:
    """After commit: wake long-polling nodes and log followers, count for metrics."""

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord

    def market_has_work(self, event: JobQueued | JobRequeued) -> None:
        self.coord.notifier.notify(event.market)

    def node_has_work(self, event: JobAssigned) -> None:
        self.coord.notifier.wake(event.node)

    def node_markets_changed(self, event: NodeMarketsChanged) -> None:
        """A waiting poll wakes to wait again under the markets the node serves now."""
        self.coord.notifier.wake(event.node)

    def logs_moved(self, event: JobEvent) -> None:
        self.coord.wake_logs(event.job_id)

    def count(self, event: Event) -> None:
        self.coord.metrics.jobs.labels(COUNTED[type(event)]).inc()


def notification_handlers(handlers: Handlers, coord: Coordinator) -> Handlers:
    notify = Notifications(coord)
    handlers.after(JobQueued, notify.market_has_work)
    handlers.after(JobRequeued, notify.market_has_work)
    handlers.after(JobAssigned, notify.node_has_work)
    handlers.after(NodeMarketsChanged, notify.node_markets_changed)
    for ended in (JobRequeued, JobCompleted, JobFailed, JobTimedOut, JobCancelled, JobSettled):
        handlers.after(ended, notify.logs_moved)
    for counted in COUNTED:
        handlers.after(counted, notify.count)
    return handlers


def open_store(path_or_url: str | Path, *, settlement: SettlementBackend = LOCAL,
               now: Callable[[], float] = time.time,
               receipts: ReceiptIssuer | None = None) -> Store:
    """A store whose units of work run the money handlers (and ``settlement``'s, and
    ``receipts``' when given): for tools and tests that call the use cases without a
    coordinator."""
    store = Store.open(path_or_url, now=now)
    use_settlement(store, settlement)
    money_handlers(store.handlers)
    market_handlers(store.handlers)
    if receipts is not None:
        receipts.register(store.handlers)
    return store


def use_settlement(store: Store, backend: SettlementBackend) -> None:
    """Settle through ``backend``: its checks on every unit of work, its handlers on every
    money event. Called once per store (at start-up, or when the chain is opened)."""
    store.settlement = backend
    settlement_handlers(store.handlers, backend)


def bootstrap(settings: CoordinatorSettings, *, store: Store | None = None,
              clock: Callable[[], float] = time.time,
              settlement: SettlementBackend | None = None) -> Coordinator:
    """The coordinator with its store, clock, notifier and handler registry wired.

    ``settlement``: an already opened backend; without one, ``local`` settlement is used
    now, and a chain named by the settings (``litesvm``/``solana``) is opened by the
    app's start-up (:meth:`Coordinator.open_settlement`), which installs it then.
    """
    store = store or Store.open(settings.db_url, now=clock)
    store.handlers = Handlers()
    coord = Coordinator(settings, store, clock)
    money_handlers(store.handlers)
    market_handlers(store.handlers)
    notification_handlers(store.handlers, coord)
    coord.receipts = ReceiptIssuer(AttestorKeys(settings.attestor_dir))
    coord.receipts.register(store.handlers)
    store.handlers.on(JobCompleted, chain_requests.on_job_completed)
    if settlement is not None:
        install_settlement(coord, settlement)
    elif settings.settlement == "local":
        install_settlement(coord, LOCAL)
    return coord


def install_settlement(coord: Coordinator, backend: SettlementBackend) -> None:
    """Make ``backend`` the coordinator's settlement (once)."""
    if coord.settlement_installed:
        raise RuntimeError("the settlement backend is chosen once, at start-up")
    coord.settlement = backend
    coord.settlement_installed = True
    use_settlement(coord.store, backend)
    if isinstance(backend, ReceiptPublisher) and coord.receipts is not None:
        coord.receipts.slot = backend.observed_slot


async def open_settlement(coord: Coordinator) -> None:
    """At start-up: connect the chain the settings name (``litesvm``/``solana``), open its
    mirror of the ledger and install it. Nothing to do when one is installed already."""
    s = coord.settings
    if coord.settlement_installed:
        return
    from nosgrid.settlement.onchain import open_backend

    backend = await open_backend(
        s.settlement, rpc_url=s.solana_rpc_url, commitment=s.solana_commitment,
        authority_keypair=s.solana_authority_keypair,
        accounts_file=s.solana_accounts_file or s.data_dir / "solana-accounts.json",
        batch_size=s.settlement_batch_size, anchor_every=s.anchor_every,
        publish_receipts=s.publish_receipts)
    await backend.open(coord.store, int(coord.now()))
    install_settlement(coord, backend)
