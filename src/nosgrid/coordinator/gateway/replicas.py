"""The gateway's replicas: the service registry that nodes' reports feed, deployments and
scale to zero, and finding a healthy replica for a request.

The tables (``gateway_services``, ``gateway_deployments``) are the truth; every worker
reads them again each tick (:meth:`ReplicasMixin.sync`), so a report that reached another
coordinator process, or a deployment made through it, is seen here within one tick. A
worker starts a replica only if, in the same transaction, the model's jobs in the table
are fewer than wanted, so two processes cannot both fill the same gap; idle replicas stop
on the last use by any worker (``last_used_at``, written by each worker's flush).

:class:`ReplicasMixin` is one half of :class:`~nosgrid.coordinator.gateway.runtime.
Gateway`, kept in its own module for size: its methods read and write the gateway's state
directly, so the attributes they use are declared on the mixin and set by
``Gateway.__init__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Final

from nosgrid.coordinator.gateway.registry import Registry, Replica
from nosgrid.coordinator.gateway.settings import GatewaySettings
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import economics
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.core.errors import (
    Forbidden,
    ModelNotFound,
    ModelUnavailable,
    NosgridError,
    NotFound,
    UpstreamFailed,
)
from nosgrid.core.jobs.load import canonical_json, parse_job_definition
from nosgrid.core.jobs.state import OPEN
from nosgrid.core.metering import Prices
from nosgrid.store.gateway import Deployment, GatewayRepo

log = logging.getLogger(__name__)
#: a replica lives while its job is open (core's definition)
LIVE_STATES = frozenset(s.value for s in OPEN)
_ALIAS = re.compile(r"^--(model_alias|served-model-name|alias)$")
#: the OpenAI routes the gateway proxies
CHAT: Final = frozenset({"chat", "completions"})
EMBEDDINGS: Final = frozenset({"embeddings"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass
class ColdStart:
    model: str
    job_id: str
    posted_at: float
    ready_at: float | None = None
    by_us: bool = True  # False: another process posted it (its cold start is not ours)

    @property
    def seconds(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.posted_at


class ReplicasMixin:
    """Registry, deployments and scaling methods of ``Gateway`` (see the module docstring)."""

    coord: Coordinator
    settings: GatewaySettings
    registry: Registry
    deployments: dict[str, Deployment]
    job_models: dict[str, str]
    #: job id → the routes its engine answers (``served_kinds`` of its definition)
    job_kinds: dict[str, frozenset[str] | None]
    starting: dict[str, ColdStart]
    cold_starts: list[ColdStart]

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
                raise Forbidden(f"job {job_id} is not running on this node")
            name = model or self.model_of_job(job_id) or op_id
            GatewayRepo(uow.conn).put_service(job_id, op_id, node, name, endpoint, healthy, now)
            rep = float(economics.node_standing(uow, node, int(now))["reputation"])
            uow.commit()
        self._reported(Replica(job_id, op_id, node, name, endpoint, healthy, rep,
                               last_used=time.monotonic(), reported_at=now))
        return {"job_id": job_id, "model": name, "healthy": healthy}

    def _reported(self, replica: Replica) -> None:
        """A report (to this process, or read from the table) about one replica."""
        self.job_models[replica.job_id] = replica.model
        self.registry.upsert(replica)
        start = self.starting.pop(replica.job_id, None)
        if start is not None and not replica.healthy:
            self.starting[replica.job_id] = start
        elif start is not None and start.by_us:  # (another process's it records itself)
            start.ready_at = time.monotonic()
            self.cold_starts.append(start)
            log.info("replica ready", extra={"model": replica.model, "job": replica.job_id,
                                             "cold_start_s": round(start.seconds or 0, 3)})

    def sync(self) -> None:
        """Deployments and replicas as their tables say (any process may have changed them).

        A row newer than what this worker knows replaces it (a replica this worker marked
        failed stays so until the node reports again or a probe succeeds); a job with only
        its placeholder row is starting; what the tables no longer have is forgotten.
        """
        with self.coord.store.uow(write=False) as uow:
            repo = GatewayRepo(uow.conn)
            self.deployments = {d.model: d for d in repo.deployments()}
            rows = repo.services()
            fresh = []
            for row in rows:
                known = self.registry.replicas.get((str(row["job_id"]), str(row["op_id"])))
                if row["op_id"] and (known is None
                                     or float(row["updated_at"]) > known.reported_at):
                    rep = (known.reputation if known is not None else float(
                        economics.node_standing(uow, str(row["node"]),
                                                int(self.coord.now()))["reputation"]))
                    fresh.append(Replica(str(row["job_id"]), str(row["op_id"]),
                                         str(row["node"]), str(row["model"]),
                                         str(row["endpoint"]), bool(row["healthy"]), rep,
                                         reported_at=float(row["updated_at"])))
        mono, wall = time.monotonic(), self.coord.now()
        for replica in fresh:
            self._reported(replica)
        jobs = {str(r["job_id"]) for r in rows}
        reported = {str(r["job_id"]) for r in rows if r["op_id"]}
        for row in rows:
            job_id = str(row["job_id"])
            if job_id not in reported and job_id not in self.starting:
                self.job_models[job_id] = str(row["model"])  # another process started it
                self.starting[job_id] = ColdStart(str(row["model"]), job_id, mono,
                                                  by_us=False)
            seen = self.registry.replicas.get((job_id, str(row["op_id"])))
            if seen is not None:  # used by any worker, or else reported, that long ago
                used = max(float(row["updated_at"]), float(row["last_used_at"] or 0.0))
                seen.last_used_by_any = mono - max(0.0, wall - used)
        gone = [j for j in {r.job_id for r in self.registry.replicas.values()} | set(
            self.starting) if j not in jobs]
        if gone:
            self._forget(gone)

    def _forget(self, job_ids: list[str]) -> None:
        self.registry.drop_jobs(job_ids)
        for j in job_ids:
            self.starting.pop(j, None)
            self.job_models.pop(j, None)
            self.job_kinds.pop(j, None)
        for model in {r.model for r in self.registry.replicas.values()} | set(self.deployments):
            if not any(r.healthy for r in self.registry.for_model(model)):
                self.registry.ready[model].clear()

    def refresh(self) -> None:
        """Forget replicas whose job ended (finished, failed, cancelled, timed out)."""
        jobs = {r.job_id for r in self.registry.replicas.values()} | set(self.starting)
        if not jobs:
            return
        with self.coord.store.uow(write=False) as uow:
            ended = [j for j in jobs if uow.jobs.get(j).state.value not in LIVE_STATES]
        if not ended:
            return
        self._forget(ended)
        with self.coord.store.uow() as uow:
            GatewayRepo(uow.conn).drop_services(ended)
            uow.commit()

    def models(self) -> list[str]:
        return sorted(set(self.registry.models()) | set(self.deployments))

    def serves(self, model: str) -> frozenset[str] | None:
        """The routes ``model`` answers (:func:`served_kinds` of its deployment's or its
        replicas' definition), or None when no definition says."""
        d = self.deployments.get(model)
        if d is not None:
            return served_kinds(json.loads(d.spec))
        for replica in self.registry.for_model(model):
            if replica.job_id not in self.job_kinds:
                with self.coord.store.uow(write=False) as uow:
                    spec = uow.jobs.spec(uow.jobs.get(replica.job_id).spec_hash) or "{}"
                self.job_kinds[replica.job_id] = served_kinds(json.loads(spec))
            kinds = self.job_kinds[replica.job_id]
            if kinds is not None:
                return kinds
        return None

    def prices(self, model: str) -> Prices:
        d = self.deployments.get(model)
        return Prices(d.prompt_price, d.completion_price) if d else self.settings.default_prices

    # ------------------------------------------------------------------ scale

    def deploy(self, d: Deployment) -> Deployment:
        defn = parse_job_definition(json.loads(d.spec))  # InvalidJobSpec if it is not one
        canonical = Deployment(**{**d.__dict__, "spec": canonical_json(defn).decode()})
        with self.coord.store.uow() as uow:
            uow.markets.get(d.market)
            GatewayRepo(uow.conn).put_deployment(canonical)
            uow.commit()
        self.deployments[d.model] = canonical
        self.autoscale()
        return d

    def undeploy(self, model: str, owner: str) -> None:
        with self.coord.store.uow() as uow:
            repo = GatewayRepo(uow.conn)
            d = repo.lock_deployment(model)
            if d is None or d.owner != owner:
                raise NotFound(f"no deployment of {model} by you")
            repo.drop_deployment(model)
            uow.commit()
        self.deployments.pop(model, None)
        for r in self.registry.for_model(model):
            self._cancel(r.job_id, owner)
        for job_id, cs in list(self.starting.items()):
            if cs.model == model:
                self._cancel(job_id, owner)

    def start_replica(self, d: Deployment, *, below: int) -> str | None:
        """Post the deployment's service job as its owner, if the model has fewer than
        ``below`` jobs in the table (whichever process posted them); None if not. Raises if
        the wallet is short."""
        defn = parse_job_definition(json.loads(d.spec))
        now = int(self.coord.now())
        with self.coord.store.uow() as uow:
            repo = GatewayRepo(uow.conn)
            if repo.lock_deployment(d.model) is None or len(repo.service_jobs(d.model)) >= below:
                return None  # undeployed meanwhile, or enough replicas posted already
            params = uow.markets.get(d.market)
            job = job_services.post_job(uow, client=d.owner, definition=defn, market=d.market,
                                        timeout=params.max_timeout, now=now,
                                        oracle=self.coord.settings.oracle)
            job = job_services.dispatch(uow, job, now, self.coord.matcher)
            repo.put_service(job.id, "", job.node or "", d.model, "", False, now)
            uow.commit()
        self.job_models[job.id] = d.model
        self.starting[job.id] = ColdStart(d.model, job.id, time.monotonic())
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
        self.registry.drop_jobs([job_id])
        self.starting.pop(job_id, None)

    def autoscale(self) -> None:
        now = time.monotonic()
        for d in list(self.deployments.values()):
            replicas = self.registry.for_model(d.model)
            starting = sum(1 for s in self.starting.values() if s.model == d.model)
            count = len(replicas) + starting
            if count < d.min_replicas:
                self._try_start(d, below=d.min_replicas)
                continue
            idle = [r for r in replicas if r.outstanding == 0
                    and now - max(r.last_used, r.last_used_by_any) >= d.idle_s]
            for r in sorted(idle, key=lambda r: max(r.last_used, r.last_used_by_any))[
                    : max(0, count - d.min_replicas)]:
                log.info("stopping an idle replica", extra={"model": d.model, "job": r.job_id})
                self._cancel(r.job_id, d.owner)

    def _try_start(self, d: Deployment, *, below: int) -> bool:
        """Start a replica unless the table has ``below`` already; False if it could not
        (True also when another process's replica is on its way)."""
        try:
            self.start_replica(d, below=below)
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
                self._try_start(d, below=count + 1)
            return replica
        if d is None and not self.registry.for_model(model):
            raise model_not_found(model)
        starting = any(s.model == model for s in self.starting.values())
        if d is not None and not starting and count < d.max_replicas:
            starting = self._try_start(d, below=count + 1)
            if not starting and not self.registry.for_model(model):
                raise ModelUnavailable(f"cannot start a replica of `{model}` (its owner's "
                                       "wallet or the market has no room); retry later")
        others = [r for r in self.registry.for_model(model) if r.key not in exclude]
        if exclude and not others and not starting:
            raise UpstreamFailed(f"every replica of `{model}` failed this request")
        wait_s = (self.settings.cold_start_timeout_s if starting
                  else self.settings.unhealthy_wait_s)
        event = self.registry.ready[model]
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModelUnavailable(f"no healthy replica of `{model}` within {wait_s:g} "
                                       "s; retry shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 1.0))
            replica = self.registry.pick(model, exclude)
            if replica is not None:
                return replica
            event.clear()

    def mark_failed(self, replica: Replica) -> None:
        self.registry.mark_unhealthy(replica)


def model_not_found(model: str) -> ModelNotFound:
    return ModelNotFound(f"The model `{model}` does not exist or no node serves it; list "
                         "models with GET /v1/models or deploy it with `nosgrid deploy`")


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


def served_kinds(spec: dict[str, Any]) -> frozenset[str] | None:
    """The routes the engine of a service job answers, when its command says: llama.cpp's
    servers do embeddings only in embedding mode (``--embedding true``, ``--embeddings``)
    and then nothing else; vLLM embeds with ``--task embed`` (or ``--runner pooling``).
    None: the command names no engine we know, so every route is passed on.

    >>> cmd = ["python3", "-m", "llama_cpp.server", "--model_alias", "m"]
    >>> def spec(*extra): return {"ops": [{"args": {"expose": [{"port": 8000}],
    ...                                            "cmd": [*cmd, *extra]}}]}
    >>> sorted(served_kinds(spec())), sorted(served_kinds(spec("--embedding", "true")))
    (['chat', 'completions'], ['embeddings'])
    >>> served_kinds(spec("--embedding", "false")) == CHAT
    True
    >>> served_kinds({"ops": [{"args": {"expose": [{"port": 1}], "cmd": "serve"}}]}) is None
    True
    """
    for op in spec.get("ops") or []:
        args = op.get("args") or {}
        cmd = args.get("cmd")
        if not args.get("expose") or not isinstance(cmd, list):
            continue
        words = [w for w in cmd if isinstance(w, str)]
        text = " ".join(words)
        if "llama_cpp.server" in text or "llama-server" in text:
            for i, word in enumerate(words):
                flag, _, value = word.partition("=")
                if flag not in ("--embedding", "--embeddings"):
                    continue
                value = value or (words[i + 1] if i + 1 < len(words)
                                  and not words[i + 1].startswith("-") else "true")
                return CHAT if value.lower() in _FALSE else EMBEDDINGS
            return CHAT
        if "vllm" in text:
            pairs = dict(zip(words, [*words[1:], ""], strict=True))
            pooling = pairs.get("--task") == "embed" or pairs.get("--runner") == "pooling"
            return EMBEDDINGS if pooling else CHAT
    return None


__all__ = ["CHAT", "EMBEDDINGS", "LIVE_STATES", "ColdStart", "ReplicasMixin",
           "model_from_spec", "model_not_found", "served_kinds"]
