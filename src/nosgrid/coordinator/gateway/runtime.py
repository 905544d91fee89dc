"""The gateway inside the coordinator: keys, the service registry, metering, scale to zero.

One :class:`Gateway` lives next to the :class:`~nosgrid.coordinator.runtime.Coordinator`
(``app.state.gateway``). It is the only writer of the ``gwhold:*`` ledger accounts, so
its in-memory books (``Meter``) mirror them exactly; every money movement still goes
through ``uow.ledger.append`` and the ledger's invariants. The service registry, deployments
and scale to zero are the :class:`~nosgrid.coordinator.gateway.replicas.ReplicasMixin`
half of the class (``replicas.py``); its knobs are ``GatewaySettings`` (``settings.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import httpx

from nosgrid.coordinator.gateway import errors as oe
from nosgrid.coordinator.gateway.registry import Registry, Replica
from nosgrid.coordinator.gateway.replicas import (
    LIVE_STATES,
    ColdStart,
    ReplicasMixin,
    model_from_spec,
)
from nosgrid.coordinator.gateway.settings import GatewaySettings
from nosgrid.coordinator.gateway.upstream import UpstreamPool
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.core.apikeys import KeyClaims, KeyRejected, verify_key
from nosgrid.core.errors import NosgridError
from nosgrid.core.ledger import wallet
from nosgrid.core.metering import (
    HOLD_PREFIX,
    Meter,
    Prices,
    QuotaExceeded,
    Reservation,
    hold_account,
    release_postings,
)
from nosgrid.settlement.backend import settlement_of
from nosgrid.store.gateway import Deployment, GatewayRepo

log = logging.getLogger(__name__)


class Gateway(ReplicasMixin):
    """Shared state of the OpenAI routes (see ``routes.py``) and the service-registry API.

    The registry, deployment and scaling methods live in ``replicas.py``
    (:class:`~nosgrid.coordinator.gateway.replicas.ReplicasMixin`).
    """

    def __init__(self, coord: Coordinator, settings: GatewaySettings | None = None) -> None:
        self.coord = coord
        self.settings = settings or GatewaySettings()
        self.meter = Meter(fee_bps=self.settings.fee_bps, topup_chunk=self.settings.topup_chunk)
        self.registry = Registry()
        self.revoked: set[str] = set()
        self.deployments: dict[str, Deployment] = {}
        self.job_models: dict[str, str] = {}
        self.starting: dict[str, ColdStart] = {}  # job id → a replica being started
        self.cold_starts: list[ColdStart] = []
        self._since_flush = 0
        self._last_flush = 0.0
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._verified: dict[str, KeyClaims] = {}
        self.upstream = UpstreamPool()
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.upstream_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
            trust_env=False)

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Read revocations, deployments and live services; return stray holds."""
        now = self.coord.now()
        with self.coord.store.uow() as uow:
            repo = GatewayRepo(uow.conn)
            self.revoked = repo.revoked()
            self.deployments = {d.model: d for d in repo.deployments()}
            dead = []
            for row in repo.services():
                job_id = str(row["job_id"])
                if uow.jobs.get(job_id).state.value not in LIVE_STATES:
                    dead.append(job_id)
                    continue
                self.job_models[job_id] = str(row["model"])
                if row["op_id"]:
                    self.registry.upsert(Replica(job_id, str(row["op_id"]), str(row["node"]),
                                                 str(row["model"]), str(row["endpoint"]),
                                                 bool(row["healthy"])))
            repo.drop_services(dead)
            # holds left by a crash: their pending usage died with the process
            stray = [(acct[len(HOLD_PREFIX):], amount)
                     for acct, amount in uow.ledger.balances(HOLD_PREFIX).items() if amount > 0]
            rows = []
            for kid, amount in stray:
                key = repo.key(kid)
                if key is not None:
                    rows.append((kid, str(key["owner"]), amount))
            if rows:
                uow.ledger.append("gateway.release", "startup", int(now), release_postings(rows))
            uow.commit()

    async def start(self) -> None:
        self.load()
        self._last_flush = time.monotonic()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._background:
            await asyncio.wait(set(self._background), timeout=10.0)
        self.flush(release_all=True)
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
        """Flush when due, forget ended replicas, stop idle ones, keep ``min`` running."""
        if time.monotonic() - self._last_flush >= self.settings.flush_interval_s:
            self.flush()
        self.refresh()
        self.autoscale()

    # ------------------------------------------------------------------ keys

    def authorize(self, header: str | None, model: str | None) -> KeyClaims:
        """The verified claims of the request's bearer key, or an OpenAI-shaped error."""
        if not header or not header.lower().startswith("bearer "):
            raise oe.invalid_key("You didn't provide an API key: send `Authorization: Bearer "
                                 "ngk_…` (create one with `nosgrid keys create`)")
        token = header[7:].strip()
        now = self.coord.now()
        claims = self._verified.get(token)
        if claims is None or now >= claims.expires_at:
            try:
                claims = verify_key(token, now=now)
            except KeyRejected as exc:
                raise oe.invalid_key(exc.message) from None
            if len(self._verified) >= 10_000:  # a signature check costs ~50 µs: keep a few
                self._verified.clear()
            self._verified[token] = claims
        if claims.kid in self.revoked:
            raise oe.invalid_key(f"The API key {claims.kid} was revoked")
        if model is not None and not claims.allows(model):
            raise oe.GatewayError(403, f"The API key {claims.kid} may not use the model "
                                  f"`{model}` (allowed: {', '.join(claims.models)})",
                                  "invalid_request_error", "model_not_allowed", "model")
        if claims.kid not in self.meter.books:
            with self.coord.store.uow() as uow:
                repo = GatewayRepo(uow.conn)
                repo.add_key(claims, "", int(self.coord.now()))
                row = repo.key(claims.kid)
                hold = uow.ledger.balance(hold_account(claims.kid))
                uow.commit()
            spent = int(row["spent"]) if row else 0
            self.meter.open_key(claims.kid, owner=claims.owner, cap=claims.cap, spent=spent,
                                hold=hold)
        return claims

    def revoke(self, kid: str, owner: str) -> dict[str, Any]:
        with self.coord.store.uow() as uow:
            repo = GatewayRepo(uow.conn)
            row = repo.key(kid)
            if row is None or row["owner"] != owner:
                from nosgrid.core.errors import NotFound
                raise NotFound(f"no API key {kid} of yours; list them with `nosgrid keys list`")
            repo.revoke(kid, int(self.coord.now()))
            uow.commit()
        self.revoked.add(kid)
        if kid in self.meter.books:
            self.meter.books[kid].closed = True
        self.flush()
        return {"kid": kid, "revoked": True}

    # ------------------------------------------------------------------ money

    def reserve(self, claims: KeyClaims, amount: int) -> Reservation:
        """Hold ``amount`` for one request, moving money wallet → hold first if needed."""
        try:
            book = self.meter.book(claims.kid)
            have = 0
            if amount > book.free:  # only then does the wallet matter
                with self.coord.store.uow(write=False) as uow:
                    have = uow.ledger.balance(wallet(claims.owner))
            top_up = self.meter.top_up_needed(claims.kid, amount, wallet_balance=have)
            if top_up:
                with self.coord.store.uow() as uow:
                    uow.ledger.append("gateway.hold", claims.kid, int(self.coord.now()),
                                      [_posting(wallet(claims.owner),
                                                hold_account(claims.kid), top_up)])
                    uow.commit()
                self.meter.add_to_hold(claims.kid, top_up)
            return self.meter.reserve(claims.kid, amount, now=time.monotonic())
        except QuotaExceeded as exc:
            raise oe.quota(exc.message) from None
        except NosgridError as exc:  # the wallet was spent between the read and the debit
            raise oe.quota(f"the key's wallet cannot cover this request: {exc.message}")\
                from None

    def charge(self, res: Reservation, *, model: str, node: str, prompt_tokens: int,
               completion_tokens: int, prices: Prices) -> int:
        cost = self.meter.charge(res, model=model, node=node, prompt_tokens=prompt_tokens,
                                 completion_tokens=completion_tokens, prices=prices)
        if cost < prices.cost(prompt_tokens, completion_tokens):
            log.warning("reservation too small; charged what the hold had",
                        extra={"kid": res.kid, "charged": cost})
        self._since_flush += 1
        if self._since_flush >= self.settings.flush_every:
            self.flush()
        return cost

    def flush(self, *, release_all: bool = False) -> int:
        """Write pending charges as one journal entry; return idle holds. Returns postings."""
        self._since_flush = 0
        self._last_flush = time.monotonic()
        postings = self.meter.flush_postings()
        lines = self.meter.take_lines()
        releases = self.meter.releasable(now=time.monotonic(),
                                         idle_s=self.settings.idle_release_s,
                                         everything=release_all)
        # releases leave each hold's pending charges in it: those are paid by `postings`
        if not postings and not releases:
            return 0
        now = int(self.coord.now())
        try:
            with self.coord.store.uow() as uow:
                repo = GatewayRepo(uow.conn)
                # one entry per key owner: on Solana each is one payout from that owner's
                # token account (the hold was a reservation of its allowance)
                by_owner: dict[str, list[Any]] = {}
                for line in lines.values():
                    by_owner.setdefault(line.owner, []).append(line)
                for owner, paid in self._by_owner(postings).items():
                    mine = by_owner.get(owner, [])
                    meta = {"requests": sum(x.requests for x in mine),
                            "tokens": sum(x.prompt_tokens + x.completion_tokens for x in mine)}
                    entry = uow.ledger.append("gateway.usage", owner, now, paid, meta)
                    settlement_of(uow).on_usage_entry(uow, entry, owner)
                if postings:
                    spend: dict[str, int] = {}
                    per_model: dict[tuple[str, str], Any] = {}
                    for (kid, model, _node), line in lines.items():
                        spend[kid] = spend.get(kid, 0) + line.cost
                        per_model.setdefault((kid, model), []).append(line)
                    for (kid, model), group in per_model.items():
                        merged = group[0].__class__(group[0].owner)
                        for g in group:
                            merged.prompt_tokens += g.prompt_tokens
                            merged.completion_tokens += g.completion_tokens
                            merged.requests += g.requests
                            merged.cost += g.cost
                        repo.add_usage(kid, model, merged)
                    for kid, amount in spend.items():
                        repo.add_spend(kid, amount)
                if releases:
                    uow.ledger.append("gateway.release", "holds", now, release_postings(releases))
                uow.commit()
        except Exception:
            self.meter.flush_failed(lines)
            log.exception("gateway flush failed; will retry")
            return 0
        self.meter.flush_done(lines)
        for kid, _owner, amount in releases:
            self.meter.released(kid, amount)
        return len(postings)

    def _by_owner(self, postings: list[Any]) -> dict[str, list[Any]]:
        """Usage postings (``gwhold:<kid> → …``) grouped by the owner of each key."""
        out: dict[str, list[Any]] = {}
        for p in postings:
            owner = self.meter.books[str(p.src).removeprefix(HOLD_PREFIX)].owner
            out.setdefault(owner, []).append(p)
        return dict(sorted(out.items()))

    def usage(self, owner: str) -> list[dict[str, Any]]:
        self.flush()
        with self.coord.store.uow(write=False) as uow:
            return GatewayRepo(uow.conn).usage_of(owner)

    def keys_of(self, owner: str) -> list[dict[str, Any]]:
        self.flush()
        with self.coord.store.uow(write=False) as uow:
            rows = GatewayRepo(uow.conn).keys_of(owner)
        for row in rows:
            book = self.meter.books.get(row["kid"])
            row["hold"] = book.hold if book else 0
        return rows


def _posting(src: str, dst: str, amount: int) -> Any:
    from nosgrid.core.ledger import Posting
    return Posting(src, dst, amount)


__all__ = ["ColdStart", "Gateway", "GatewaySettings", "model_from_spec"]
