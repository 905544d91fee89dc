"""The running coordinator: store, clock, notifier, blob store, metrics, maintenance."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nosgrid.coordinator.blobs import BlobStore
from nosgrid.coordinator.notifier import WorkNotifier
from nosgrid.coordinator.services import economics, verification
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.services import nodes as node_services
from nosgrid.coordinator.services.audit_runs import VerificationConfig
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.identity import SIGNATURE_WINDOW_S
from nosgrid.core.reputation import WeightedMatcher
from nosgrid.core.verification import VerificationParams
from nosgrid.settlement.backend import SettlementBackend, SettlementStore
from nosgrid.settlement.local import LOCAL
from nosgrid.store.db import Piggyback, Store
from nosgrid.store.repositories import NonceRepo

log = logging.getLogger(__name__)


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
        self.blobs = BlobStore(settings.blob_dir, settings.max_blob_bytes)
        self.metrics = Metrics()
        self.log_events: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._last_nonce_sweep = 0.0
        self._nonces: dict[tuple[str, str], float] | None = None
        self.settlement: SettlementBackend = LOCAL

    def use_settlement(self, backend: SettlementBackend) -> None:
        """Settle through ``backend``: every unit of work from ``store`` now carries it."""
        self.settlement = backend
        if backend.name != "local":
            self.store = SettlementStore.wrap(self.store, backend)

    async def open_settlement(self) -> None:
        """Connect the configured chain (``litesvm`` / ``solana``) and open its mirror."""
        s = self.settings
        if s.settlement == "local" or self.settlement.name != "local":
            return
        from nosgrid.settlement.onchain import open_backend

        backend = await open_backend(
            s.settlement, rpc_url=s.solana_rpc_url, commitment=s.solana_commitment,
            authority_keypair=s.solana_authority_keypair,
            accounts_file=s.solana_accounts_file or s.data_dir / "solana-accounts.json",
            batch_size=s.settlement_batch_size, anchor_every=s.anchor_every)
        await backend.open(self.store, int(self.now()))
        self.use_settlement(backend)

    def now(self) -> float:
        return self.clock()

    def claim_nonce(self, pubkey: str, nonce: str, now: float) -> Piggyback | None:
        """Mark a request's nonce used; None if this key used it within the window (replay).

        The check is in memory (loaded from the database at start, so a restart does not
        reopen the window); the row itself is written in the request's own transaction
        (see :class:`~nosgrid.store.db.Piggyback`), saving a commit per request.
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
        return Piggyback(lambda conn: NonceRepo(conn).use(pubkey, nonce, now))

    def store_nonce(self, piggyback: Piggyback) -> None:
        """Write a nonce whose request committed nothing (it failed, or only read)."""
        with self.store.uow() as uow:
            piggyback.write(uow.conn)
            uow.nonces.forget_before(self.now() - 2 * SIGNATURE_WINDOW_S)
            uow.commit()
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
            uow.commit()
        for job in [*expired, *touched]:
            self.wake_logs(job.id)
            if job.state.value == "queued":
                self.notifier.notify(job.market)
        return {"expired": len(expired), "requeued_or_refunded": len(touched),
                "epochs": len(epochs), **self.verify(int(now))}

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
            uow.commit()
        for run in res.assigned:
            if run.node is not None:
                self.notifier.wake(run.node)
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
