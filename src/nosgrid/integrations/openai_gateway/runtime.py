"""The gateway inside the coordinator: keys, the service registry, metering, scale to zero.

One :class:`Gateway` lives next to the :class:`~nosgrid.coordinator.runtime.Coordinator`
(``app.state.gateway``). It is the only writer of the ``gwhold:*`` ledger accounts, so
its in-memory books (``Meter``) mirror them exactly; every money movement still goes
through ``uow.ledger.append`` and the ledger's invariants.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import economics
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.core.errors import NosgridError
from nosgrid.core.jobs.load import canonical_json, parse_job_definition
from nosgrid.core.jobs.load import spec_hash as hash_of
from nosgrid.core.ledger import wallet
from nosgrid.integrations.openai_gateway import errors as oe
from nosgrid.integrations.openai_gateway.billing import (
    HOLD_PREFIX,
    Meter,
    Prices,
    QuotaExceeded,
    Reservation,
    hold_account,
    release_postings,
)
from nosgrid.integrations.openai_gateway.keys import KeyClaims, KeyRejected, verify_key
from nosgrid.integrations.openai_gateway.registry import Registry, Replica
from nosgrid.integrations.openai_gateway.store import Deployment, GatewayRepo
from nosgrid.integrations.openai_gateway.upstream import UpstreamPool

log = logging.getLogger(__name__)
LIVE_STATES = frozenset({"queued", "assigned", "running"})
_ALIAS = re.compile(r"^--(model_alias|served-model-name|alias)$")


@dataclass(frozen=True)
class GatewaySettings:
    """Knobs of the gateway; prices are NOS base units per token."""

    flush_every: int = 64  # requests between journal entries
    flush_interval_s: float = 2.0  # … or this long, whichever comes first
    topup_chunk: int = 1_000_000  # moved wallet → hold at a time (1 NOS)
    fee_bps: int = 1_000  # treasury's share of token revenue
    default_prices: Prices = field(default_factory=Prices)
    default_max_tokens: int = 256  # when a request names none (bounds the reservation)
    max_tokens_limit: int = 8_192
    idle_release_s: float = 300.0  # an unused key's hold returns to its owner
    cold_start_timeout_s: float = 300.0
    unhealthy_wait_s: float = 15.0  # how long a request waits for a flapping replica
    tick_s: float = 1.0
    scale_up_outstanding: int = 4  # start another replica above this per replica
    upstream_timeout_s: float = 600.0


@dataclass
class ColdStart:
    model: str
    job_id: str
    posted_at: float
    ready_at: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.posted_at


class Gateway:
    """Shared state of the OpenAI routes (see ``routes.py``) and the service-registry API."""

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
                if postings:
                    meta = {"requests": sum(x.requests for x in lines.values()),
                            "tokens": sum(x.prompt_tokens + x.completion_tokens
                                          for x in lines.values())}
                    uow.ledger.append("gateway.usage", "batch", now, postings, meta)
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

    # ------------------------------------------------------------------ registry

    def model_of_job(self, job_id: str) -> str | None:
        if job_id in self.job_models:
            return self.job_models[job_id]
        with self.coord.store.uow(write=False) as uow:
            spec = uow.jobs.spec(uow.jobs.get(job_id).spec_hash) or "{}"
        return model_from_spec(json.loads(spec))

    def report_service(self, job_id: str, node: str, op_id: str, endpoint: str,
                       healthy: bool, model: str | None) -> dict[str, Any]:
        """A node says one exposed port of its running service job is (un)healthy."""
        now = self.coord.now()
        with self.coord.store.uow() as uow:
            job = uow.jobs.get(job_id)
            if job.node != node:
                from nosgrid.core.errors import Forbidden
                raise Forbidden(f"job {job_id} is not running on this node")
            name = model or self.model_of_job(job_id) or op_id
            GatewayRepo(uow.conn).put_service(job_id, op_id, node, name, endpoint, healthy, now)
            rep = float(economics.node_standing(uow, node, int(now))["reputation"])
            uow.commit()
        self.job_models[job_id] = name
        self.registry.upsert(Replica(job_id, op_id, node, name, endpoint, healthy, rep,
                                     last_used=time.monotonic()))
        start = self.starting.pop(job_id, None)
        if start is not None and healthy:
            start.ready_at = time.monotonic()
            self.cold_starts.append(start)
            log.info("replica ready", extra={"model": name, "job": job_id,
                                             "cold_start_s": round(start.seconds or 0, 3)})
        elif start is not None:
            self.starting[job_id] = start
        return {"job_id": job_id, "model": name, "healthy": healthy}

    def refresh(self) -> None:
        """Forget replicas whose job ended (finished, failed, cancelled, timed out)."""
        jobs = {r.job_id for r in self.registry.replicas.values()} | set(self.starting)
        if not jobs:
            return
        with self.coord.store.uow(write=False) as uow:
            ended = [j for j in jobs if uow.jobs.get(j).state.value not in LIVE_STATES]
        if not ended:
            return
        self.registry.drop_jobs(ended)
        for j in ended:
            self.starting.pop(j, None)
            self.job_models.pop(j, None)
        for model in {r.model for r in self.registry.replicas.values()} | set(self.deployments):
            if not any(r.healthy for r in self.registry.for_model(model)):
                self.registry.ready[model].clear()
        with self.coord.store.uow() as uow:
            GatewayRepo(uow.conn).drop_services(ended)
            uow.commit()

    def models(self) -> list[str]:
        return sorted(set(self.registry.models()) | set(self.deployments))

    def prices(self, model: str) -> Prices:
        d = self.deployments.get(model)
        return Prices(d.prompt_price, d.completion_price) if d else self.settings.default_prices

    # ------------------------------------------------------------------ scale

    def deploy(self, d: Deployment) -> Deployment:
        defn = parse_job_definition(json.loads(d.spec))  # InvalidJobSpec if it is not one
        with self.coord.store.uow() as uow:
            uow.markets.get(d.market)
            GatewayRepo(uow.conn).put_deployment(d)
            uow.commit()
        self.deployments[d.model] = Deployment(**{**d.__dict__,
                                                  "spec": canonical_json(defn).decode()})
        self.autoscale()
        return d

    def undeploy(self, model: str, owner: str) -> None:
        d = self.deployments.get(model)
        if d is None or d.owner != owner:
            from nosgrid.core.errors import NotFound
            raise NotFound(f"no deployment of {model} by you")
        with self.coord.store.uow() as uow:
            GatewayRepo(uow.conn).drop_deployment(model)
            uow.commit()
        del self.deployments[model]
        for r in self.registry.for_model(model):
            self._cancel(r.job_id, owner)
        for job_id, cs in list(self.starting.items()):
            if cs.model == model:
                self._cancel(job_id, owner)

    def start_replica(self, d: Deployment) -> str:
        """Post the deployment's service job as its owner (raises if the wallet is short)."""
        defn = parse_job_definition(json.loads(d.spec))
        now = int(self.coord.now())
        with self.coord.store.uow() as uow:
            params = uow.markets.get(d.market)
            job = job_services.post_job(
                uow, client=d.owner, market_name=d.market, spec_hash=hash_of(defn),
                spec_body=canonical_json(defn).decode(), timeout=params.max_timeout,
                max_price=None, now=now)
            job = job_services.dispatch(uow, job, now, self.coord.matcher)
            GatewayRepo(uow.conn).put_service(job.id, "", job.node or "", d.model, "", False,
                                              now)
            uow.commit()
        self.job_models[job.id] = d.model
        self.starting[job.id] = ColdStart(d.model, job.id, time.monotonic())
        if job.node is not None:
            self.coord.notifier.wake(job.node)
        else:
            self.coord.notifier.notify(d.market)
        log.info("starting a replica", extra={"model": d.model, "job": job.id})
        return job.id

    def _cancel(self, job_id: str, owner: str) -> None:
        try:
            with self.coord.store.uow() as uow:
                job_services.cancel_job(uow, job_id, owner, int(self.coord.now()))
                uow.commit()
        except NosgridError as exc:
            log.info("could not cancel replica", extra={"job": job_id, "err": exc.message})
        with self.coord.store.uow() as uow:
            GatewayRepo(uow.conn).drop_services([job_id])
            uow.commit()
        self.job_models.pop(job_id, None)
        self.coord.wake_logs(job_id)
        self.registry.drop_jobs([job_id])
        self.starting.pop(job_id, None)

    def autoscale(self) -> None:
        now = time.monotonic()
        for d in list(self.deployments.values()):
            replicas = self.registry.for_model(d.model)
            starting = sum(1 for s in self.starting.values() if s.model == d.model)
            count = len(replicas) + starting
            if count < d.min_replicas:
                self._try_start(d)
                continue
            idle = [r for r in replicas if r.outstanding == 0 and now - r.last_used >= d.idle_s]
            for r in sorted(idle, key=lambda r: r.last_used)[: max(0, count - d.min_replicas)]:
                log.info("stopping an idle replica", extra={"model": d.model, "job": r.job_id})
                self._cancel(r.job_id, d.owner)

    def _try_start(self, d: Deployment) -> bool:
        try:
            self.start_replica(d)
            return True
        except NosgridError as exc:
            log.warning("cannot start a replica", extra={"model": d.model, "err": exc.message})
            return False

    async def replica_for(self, model: str, exclude: set[tuple[str, str]]) -> Replica:
        """A healthy replica of ``model``, starting one (and waiting) if none runs.

        A replica that is only momentarily unhealthy (a health check timed out under load,
        a failed request) is waited for, briefly, rather than failing the request.
        """
        replica = self.registry.pick(model, exclude)
        d = self.deployments.get(model)
        count = len(self.registry.for_model(model)) + sum(
            s.model == model for s in self.starting.values())
        if replica is not None:
            if (d is not None and replica.outstanding >= self.settings.scale_up_outstanding
                    and count < d.max_replicas):
                self._try_start(d)
            return replica
        if d is None and not self.registry.for_model(model):
            raise oe.model_not_found(model)
        starting = any(s.model == model for s in self.starting.values())
        if d is not None and not starting and count < d.max_replicas:
            starting = self._try_start(d)
            if not starting and not self.registry.for_model(model):
                raise oe.unavailable(f"cannot start a replica of `{model}` (its owner's "
                                     "wallet or the market has no room); retry later")
        others = [r for r in self.registry.for_model(model) if r.key not in exclude]
        if exclude and not others and not starting:
            raise oe.upstream(f"every replica of `{model}` failed this request")
        wait_s = (self.settings.cold_start_timeout_s if starting
                  else self.settings.unhealthy_wait_s)
        event = self.registry.ready[model]
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise oe.unavailable(f"no healthy replica of `{model}` within {wait_s:g} s; "
                                     "retry shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 1.0))
            replica = self.registry.pick(model, exclude)
            if replica is not None:
                return replica
            event.clear()

    def mark_failed(self, replica: Replica) -> None:
        self.registry.mark_unhealthy(replica)

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


def model_from_spec(spec: dict[str, Any]) -> str | None:
    """The served model name in a service job: llama.cpp's ``--model_alias`` or vLLM's
    ``--served-model-name`` in the first op that exposes a port."""
    for op in spec.get("ops") or []:
        args = op.get("args") or {}
        if not args.get("expose"):
            continue
        cmd = args.get("cmd") or []
        if isinstance(cmd, list):
            for i, word in enumerate(cmd[:-1]):
                if isinstance(word, str) and _ALIAS.match(word):
                    return str(cmd[i + 1])
    return None


__all__ = ["ColdStart", "Gateway", "GatewaySettings", "model_from_spec"]
