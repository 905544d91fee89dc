"""The gateway inside the coordinator: keys, the service registry, metering, scale to zero.

One :class:`Gateway` lives next to the :class:`~nosgrid.coordinator.runtime.Coordinator`
(``app.state.gateway``); several coordinator processes on one database each run one, as
a **worker** with its own lease. What they share is authoritative in the database; what a
worker keeps in memory is a cache no other process can contradict: its own holds
(``gwhold:<kid>:<worker>``, which only it spends from — ``billing.py``), verified keys and
revocations (a revoked key stays revoked; a key's row is read again after
``key_recheck_s``), and the deployments and replicas, read again from their tables on
every tick (``replicas.py``). Every money movement goes through ``uow.ledger.append`` and
the ledger's invariants. Its knobs are ``GatewaySettings`` (``settings.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Coroutine
from typing import Any

import httpx

from nosgrid.coordinator.blobs import check_sha256
from nosgrid.coordinator.gateway.audits import AuditsMixin
from nosgrid.coordinator.gateway.billing import BillingMixin
from nosgrid.coordinator.gateway.records import Recorder
from nosgrid.coordinator.gateway.registry import Registry
from nosgrid.coordinator.gateway.replicas import ColdStart, ReplicasMixin, model_from_spec
from nosgrid.coordinator.gateway.settings import GatewaySettings
from nosgrid.coordinator.gateway.upstream import UpstreamPool
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import inference_audits
from nosgrid.core.apikeys import KeyClaims, verify_key
from nosgrid.core.errors import BlobNotFound, InvalidApiKey, ModelNotAllowed, NotFound
from nosgrid.core.metering import Charge, Meter, hold_account
from nosgrid.store.gateway import Deployment, GatewayRepo
from nosgrid.store.inference import InferenceRepo

log = logging.getLogger(__name__)


class Gateway(BillingMixin, ReplicasMixin, AuditsMixin):
    """Shared state of the OpenAI routes (``coordinator/api/openai.py``) and the
    service-registry API.

    Money (holds, charges, flushes, dead workers) lives in ``billing.py``
    (:class:`~nosgrid.coordinator.gateway.billing.BillingMixin`); the registry, deployment
    and scaling methods in ``replicas.py``
    (:class:`~nosgrid.coordinator.gateway.replicas.ReplicasMixin`).
    """

    def __init__(self, coord: Coordinator, settings: GatewaySettings | None = None) -> None:
        self.coord = coord
        self.settings = settings or GatewaySettings()
        #: this process's worker id: its lease row, its holds, its charges
        self.worker = secrets.token_hex(8)
        self.meter = Meter(self.worker, fee_bps=self.settings.fee_bps,
                           topup_chunk=self.settings.topup_chunk)
        self.registry = Registry()
        #: keys known revoked (a cache that cannot go wrong: a revocation is forever)
        self.revoked: set[str] = set()
        self._checked: dict[str, float] = {}  # kid → when its row was last read (monotonic)
        self._unsaved: list[tuple[int, Charge]] = []
        self._charge_seq = itertools.count(1)
        self._save_handle: asyncio.TimerHandle | None = None
        self._last_touch = 0.0
        self._retired = False  # stopped: its lease and holds are gone
        self.deployments: dict[str, Deployment] = {}
        self.job_models: dict[str, str] = {}
        self.job_kinds: dict[str, frozenset[str] | None] = {}
        self.starting: dict[str, ColdStart] = {}  # job id → a replica being started
        self.cold_starts: list[ColdStart] = []
        self._since_flush = 0
        self._last_flush = 0.0
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._verified: dict[str, KeyClaims] = {}
        self.upstream = UpstreamPool()
        self.recorder = Recorder(coord.blobs, enabled=self.settings.record_requests,
                                 defaults=self.settings.sampler)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.upstream_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
            trust_env=False)

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Register this worker, take over dead ones, read deployments and live replicas."""
        with self.coord.store.uow() as uow:
            GatewayRepo(uow.conn).add_worker(self.worker, self.coord.now())
            uow.commit()
        self.take_over_dead()
        self.sync()
        self.refresh()

    async def start(self) -> None:
        self.load()
        self._last_flush = time.monotonic()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop, let requests settle, pay every charge, return every hold and drop
        this worker's lease (one transaction)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._background:
            await asyncio.wait(set(self._background), timeout=10.0)
        self.flush(retire=True)
        await self.http.aclose()
        await self.upstream.aclose()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` to its end even if the request that started it is cancelled."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            try:
                self.tick()
                await self.probe_unhealthy()
            except Exception:  # keep the loop alive; the next tick retries
                log.exception("gateway tick failed")

    async def probe_unhealthy(self) -> None:
        """Give replicas the gateway marked failed a chance to come back (GET /v1/models)."""
        for r in [r for r in self.registry.replicas.values() if not r.healthy]:
            try:
                resp = await self.http.get(r.endpoint + "/v1/models", timeout=2.0)
            except httpx.HTTPError:
                continue
            if resp.status_code == 200 and r.key in self.registry.replicas:
                r.healthy = True
                self.registry.ready[r.model].set()

    def tick(self) -> None:
        """Renew the lease (flushing when due), take over dead workers, read the keys held
        for, the deployments and the replicas again, forget ended replicas, stop idle ones,
        keep ``min`` running."""
        self.recheck_keys()
        if time.monotonic() - self._last_flush >= self.settings.flush_interval_s:
            self.flush()  # renews the lease too
        else:
            self.heartbeat()
        self.take_over_dead()
        self.sync()
        self.refresh()
        self.autoscale()
        self.audit_tick()

    # ------------------------------------------------------------------ keys

    def authorize(self, header: str | None, model: str | None) -> KeyClaims:
        """The verified claims of the request's bearer key; :class:`InvalidApiKey` or
        :class:`ModelNotAllowed` otherwise."""
        if not header or not header.lower().startswith("bearer "):
            raise InvalidApiKey("You didn't provide an API key: send `Authorization: Bearer "
                                "ngk_…` (create one with `nosgrid keys create`)",
                                reason="missing")
        token = header[7:].strip()
        now = self.coord.now()
        claims = self._verified.get(token)
        if claims is None or now >= claims.expires_at:
            claims = verify_key(token, now=now)
            if len(self._verified) >= 10_000:  # a signature check costs ~50 µs: keep a few
                self._verified.clear()
            self._verified[token] = claims
        kid = claims.kid
        if kid not in self.revoked:
            if kid not in self.meter.books:
                self._open_key(claims)
            elif time.monotonic() - self._checked.get(kid, 0.0) >= self.settings.key_recheck_s:
                self._read_keys([kid])
        if kid in self.revoked:
            raise InvalidApiKey(f"The API key {kid} was revoked", reason="revoked")
        if model is not None and not claims.allows(model):
            raise ModelNotAllowed(f"The API key {kid} may not use the model `{model}` "
                                  f"(allowed: {', '.join(claims.models)})")
        return claims

    def _open_key(self, claims: KeyClaims) -> None:
        """First use of a key in this worker: record it and open its books."""
        with self.coord.store.uow() as uow:
            repo = GatewayRepo(uow.conn)
            repo.add_key(claims, "", int(self.coord.now()))
            row = repo.key(claims.kid)
            hold = uow.ledger.balance(hold_account(claims.kid, self.worker))
            uow.commit()
        if row is None or row["owner"] != claims.owner:  # a key id is unique across owners
            raise InvalidApiKey(f"The key id {claims.kid} belongs to another wallet's key; "
                                "create a new key", reason="malformed")
        self.meter.open_key(claims.kid, owner=claims.owner, cap=int(row["cap"]),
                            spent=int(row["spent"]), hold=hold, held=int(row["held"]))
        self._checked[claims.kid] = time.monotonic()
        if row["revoked_at"] is not None:
            self._closed(claims.kid)

    def _read_keys(self, kids: list[str]) -> None:
        """Read the keys' rows again: revocations (from any process), spend and holds."""
        with self.coord.store.uow(write=False) as uow:
            rows = GatewayRepo(uow.conn).keys_by_id(kids)
        checked = time.monotonic()
        for kid in kids:
            self._checked[kid] = checked
            row = rows.get(kid)
            if row is None or kid not in self.meter.books:
                continue
            self.meter.sync(kid, spent=int(row["spent"]), held=int(row["held"]))
            if row["revoked_at"] is not None:
                self._closed(kid)
            elif self.coord.now() >= int(row["expires_at"]):
                self.meter.books[kid].closed = True

    def recheck_keys(self) -> None:
        """Read again the rows of the keys this worker holds money for, when stale: a key
        revoked through another process has its hold returned at the next flush."""
        stale = time.monotonic() - self.settings.key_recheck_s
        kids = [kid for kid, b in self.meter.books.items()
                if b.hold and not b.closed and self._checked.get(kid, 0.0) <= stale]
        if kids:
            self._read_keys(kids)

    def revoke(self, kid: str, owner: str) -> dict[str, Any]:
        with self.coord.store.uow() as uow:
            repo = GatewayRepo(uow.conn)
            row = repo.key(kid)
            if row is None or row["owner"] != owner:
                raise NotFound(f"no API key {kid} of yours; list them with `nosgrid keys list`")
            repo.revoke(kid, int(self.coord.now()))
            uow.commit()
        self._closed(kid)
        self.flush()
        return {"kid": kid, "revoked": True}

    # ------------------------------------------------------------------ reads

    def records(self, owner: str, limit: int = 100) -> list[dict[str, Any]]:
        """The owner's own request records and where their audits stand."""
        self.flush()
        with self.coord.store.uow(write=False) as uow:
            return inference_audits.records_view(uow, owner, limit=limit)

    def record_of(self, record_hash: str, owner: str) -> dict[str, Any]:
        """One stored usage record of ``owner``'s (:class:`NotFound` for anyone else's, an
        unknown or a pruned one)."""
        check_sha256(record_hash)
        with self.coord.store.uow(write=False) as uow:
            row = InferenceRepo(uow.conn).record(record_hash)
        if row is None or row["owner"] != owner:
            raise NotFound(f"no usage record {record_hash} of yours; list them with "
                           "`nosgrid usage --records`")
        try:
            return self.recorder.read(record_hash).as_dict()
        except BlobNotFound:
            raise NotFound(f"the usage record {record_hash} was pruned") from None

    def usage(self, owner: str) -> list[dict[str, Any]]:
        self.flush()
        with self.coord.store.uow(write=False) as uow:
            return GatewayRepo(uow.conn).usage_of(owner)

    def keys_of(self, owner: str) -> list[dict[str, Any]]:
        """The owner's keys; ``hold`` is what all workers hold for each (the database's)."""
        self.flush()
        with self.coord.store.uow(write=False) as uow:
            rows = GatewayRepo(uow.conn).keys_of(owner)
        for row in rows:
            row["hold"] = row.pop("held")
        return rows


__all__ = ["ColdStart", "Gateway", "GatewaySettings", "model_from_spec"]
