"""The running coordinator: store, clock, notifier, blob store, metrics, maintenance.

Built by :func:`nosgrid.coordinator.bootstrap.bootstrap`, which wires its handlers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Connection

from nosgrid.coordinator.blobs import BlobStore
from nosgrid.coordinator.limits import RequestBudgets
from nosgrid.coordinator.notifier import WorkNotifier
from nosgrid.coordinator.services import (
    accounts,
    deployments,
    economics,
    pricing,
    verification,
)
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.services import nodes as node_services
from nosgrid.coordinator.services.audit_runs import VerificationConfig
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.errors import ReplayedNonce
from nosgrid.core.identity import SIGNATURE_WINDOW_S
from nosgrid.core.reputation import WeightedMatcher
from nosgrid.core.verification import VerificationParams
from nosgrid.settlement.backend import SettlementBackend
from nosgrid.settlement.local import LOCAL
from nosgrid.store.db import Piggyback, Store
from nosgrid.store.repositories import NonceRepo

if TYPE_CHECKING:
    from nosgrid.coordinator.services.receipts import ReceiptIssuer

log = logging.getLogger(__name__)
#: how long an ``Idempotency-Key``'s first answer is kept (coordinator/api/idempotency.py)
IDEMPOTENCY_RETENTION_S = 24 * 3600


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("nosgrid_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.jobs = Counter("nosgrid_job_events_total", "Job lifecycle events", ["event"],
                            registry=self.registry)
        self.jobs_by_state = Gauge("nosgrid_jobs", "Jobs by state", ["state"],
                                   registry=self.registry)
        self.assign_latency = Histogram("nosgrid_assign_seconds", "Post → assign latency",
                                        registry=self.registry)


class Coordinator:
    """Holds what the routes share. ``clock`` is injectable so loops are testable."""

    def __init__(self, settings: CoordinatorSettings, store: Store,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.notifier = WorkNotifier()
        self.matcher = WeightedMatcher()
        #: signs result receipts (set by bootstrap)
        self.receipts: ReceiptIssuer | None = None
        self.blobs = BlobStore(settings.blob_dir, settings.max_blob_bytes)
        self.metrics = Metrics()
        self.log_events: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._last_nonce_sweep = 0.0
        self._nonces: dict[tuple[str, str], float] | None = None
        #: chosen once by ``bootstrap`` (local now, or the chain opened at start-up)
        self.settlement: SettlementBackend = LOCAL
        self.settlement_installed = False
        self.budgets = RequestBudgets(settings.budgets, self._budget_standing)

    def now(self) -> float:
        return self.clock()

    def _budget_standing(self, key: str) -> float | None:
        with self.store.uow(write=False) as uow:
            return accounts.budget_standing(uow, key, int(self.now()),
                                            self.settings.budgets.max_multiplier)

    def claim_nonce(self, pubkey: str, nonce: str, now: float) -> Piggyback | None:
        """Mark a request's nonce used; None if this key used it within the window (replay).

        The database is the authority: the nonce's row is written in the request's own
        transaction (see :class:`~nosgrid.store.db.Piggyback`, saving a commit per request),
        and a row that is already there (the nonce was used through another coordinator
        process, or before a restart) fails the request as a replay before it changes
        anything. Memory only remembers what this process saw, to refuse those replays
        without asking the database; reads (GET) are remembered in memory only: a replayed
        read changes nothing.
        """
        if self._nonces is None:
            self._nonces = self._load_nonces(now)
        key = (pubkey, nonce)
        if key in self._nonces:
            return None
        self._nonces[key] = now
        if now - self._last_nonce_sweep > SIGNATURE_WINDOW_S:
            horizon = now - 2 * SIGNATURE_WINDOW_S
            self._nonces = {k: t for k, t in self._nonces.items() if t >= horizon}
            self._last_nonce_sweep = now
        piggyback = Piggyback(lambda conn: None)

        def write(conn: Connection) -> None:
            if not NonceRepo(conn).use(pubkey, nonce, now):
                piggyback.stored = True  # it is in the database already
                raise ReplayedNonce()

        piggyback.write = write
        return piggyback

    def store_nonce(self, piggyback: Piggyback) -> None:
        """Write a nonce whose request committed nothing (it failed, or only read)."""
        try:
            with self.store.uow() as uow:
                piggyback.write(uow.conn)
                uow.nonces.forget_before(self.now() - 2 * SIGNATURE_WINDOW_S)
                uow.commit()
        except ReplayedNonce:
            pass  # stored before (by another process): nothing to add
        piggyback.stored = True

    def _load_nonces(self, now: float) -> dict[tuple[str, str], float]:
        with self.store.uow(write=False) as uow:
            return uow.nonces.recent(now - 2 * SIGNATURE_WINDOW_S)

    def wake_logs(self, job_id: str) -> None:
        event = self.log_events.pop(job_id, None)
        if event is not None:
            event.set()

    def maintenance(self) -> dict[str, int]:
        """One pass of the background loop: overdue jobs end, silent nodes go offline."""
        now = self.now()
        s = self.settings
        with self.store.uow() as uow:
            expired = job_services.expire_overdue(uow, int(now), s.deadline_grace_s)
            touched = node_services.mark_offline(uow, now, s.heartbeat_timeout_s,
                                                 s.max_attempts)
            epochs = economics.run_emissions(uow, int(now))
            uow.commit()  # the handlers wake the nodes of requeued jobs and log followers
        return {"expired": len(expired), "requeued_or_refunded": len(touched),
                "epochs": len(epochs), **self.verify(int(now)),
                "oracle_prices": self.close_oracle_epoch(int(now)),
                "deployments": self.reconcile_deployments(int(now)),
                "idempotency_forgotten": self.forget_idempotency(int(now))}

    def reconcile_deployments(self, now: int) -> int:
        """Every deployment's next step (its own transaction; see services.deployments)."""
        with self.store.uow() as uow:
            n = deployments.reconcile_all(uow, now, self.matcher)
            uow.commit()  # the handlers wake the nodes of new replicas
        return n

    def forget_idempotency(self, now: int) -> int:
        """Drop idempotency records past their retention (a day)."""
        with self.store.uow() as uow:
            n = uow.idempotency.forget_before(now - IDEMPOTENCY_RETENTION_S)
            uow.commit()
        return n

    def close_oracle_epoch(self, now: int) -> int:
        """Publish the last closed oracle epoch's prices (its own transaction; once)."""
        with self.store.uow() as uow:
            closed = pricing.close_epoch(uow, now, self.settings.oracle)
            uow.commit()
        return len(closed)

    def verification_config(self) -> VerificationConfig:
        s = self.settings
        params = VerificationParams(
            audit_window=s.audit_window_s, auditor_min_clean_jobs=s.auditor_min_clean_jobs,
            auditor_min_reputation=s.auditor_min_reputation, tiebreakers=s.audit_tiebreakers)
        return VerificationConfig(params, s.audit_rate_bps)

    def verify(self, now: int) -> dict[str, int]:
        """Audit decisions, runs, verdicts and releases (its own transaction)."""
        with self.store.uow() as uow:
            res = verification.tick(uow, now, self.verification_config(),
                                    lambda sha: self.blobs.open(sha).read_bytes())
            uow.commit()  # the handlers wake the runners of new audit runs
        return res.counts()

    async def run_maintenance(self) -> None:
        while True:
            try:
                result = self.maintenance()
                if any(result.values()):
                    log.info("maintenance", extra=result)
            except Exception:  # keep the loop alive; the next pass retries
                log.exception("maintenance pass failed")
            await asyncio.sleep(self.settings.maintenance_interval_s)
