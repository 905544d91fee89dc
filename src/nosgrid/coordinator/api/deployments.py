"""Routes: service deployments (create, list, show, events, update, stop/start/archive)
and their stable URLs ``/d/<deployment>/<port>/…`` through the coordinator."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field

from nosgrid.coordinator.api import idempotency
from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES, SQL_INT_MAX, Body
from nosgrid.coordinator.auth import verify_request
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import deployments as service
from nosgrid.core.deployments import STRATEGIES, Deployment, DeploymentConfig
from nosgrid.core.errors import Forbidden, InvalidInput, NotFound, Unavailable
from nosgrid.core.jobs.load import load_job_definition, parse_job_definition
from nosgrid.core.jobs.spec import JobDefinition
from nosgrid.core.money import format_nos, parse_nos
from nosgrid.core.views import (
    DeploymentEvent,
    DeploymentEvents,
    DeploymentReplica,
    ServiceDeploymentList,
    ServiceDeploymentView,
)
from nosgrid.store import tables as t
from nosgrid.store.db import UnitOfWork
from nosgrid.store.deployments import DeploymentRepo

router = APIRouter(prefix="/v1/deployments", tags=["deployments"], responses=ERROR_RESPONSES)
stable = APIRouter(tags=["deployments"])


class CreateDeployment(Body):
    spec: dict[str, Any] | None = None
    spec_text: str | None = Field(default=None, max_length=300_000)
    name: str | None = Field(default=None, max_length=128)
    strategy: str = Field(max_length=32)
    replicas: int = Field(default=1, ge=0, le=10_000)
    timeout: int = Field(default=600, ge=1, le=7 * 24 * 3600)
    schedule: str | None = Field(default=None, max_length=200)
    market: str | None = Field(default=None, max_length=64)
    max_spend: str | None = Field(default=None, max_length=32)
    overlap: Literal["forbid", "allow"] = "forbid"
    grace_s: int = Field(default=10, ge=1, le=86_400)
    lead_s: int = Field(default=30, ge=1, le=86_400)


class UpdateDeployment(Body):
    spec: dict[str, Any] | None = None
    spec_text: str | None = Field(default=None, max_length=300_000)
    replicas: int | None = Field(default=None, ge=0, le=10_000)
    timeout: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    schedule: str | None = Field(default=None, max_length=200)
    market: str | None = Field(default=None, max_length=64)
    max_spend: str | None = Field(default=None, max_length=32)


def _definition(spec: dict[str, Any] | None, text: str | None) -> JobDefinition | None:
    if spec is not None and text is not None:
        raise InvalidInput("send the definition as one of `spec` or `spec_text`")
    if spec is not None:
        return parse_job_definition(spec)
    return load_job_definition(text) if text is not None else None


@router.post("", status_code=201)
async def create(body: CreateDeployment, request: Request, coord: Coord,
                 signer: Signer) -> ServiceDeploymentView:
    if body.strategy not in STRATEGIES:
        raise InvalidInput(f"unknown strategy {body.strategy!r}; one of "
                           f"{', '.join(STRATEGIES)}", field="strategy")
    defn = _definition(body.spec, body.spec_text)
    if defn is None:
        raise InvalidInput("send the service's job definition (`spec` or `spec_text`)")
    key = idempotency.key_of(request)
    now = int(coord.now())
    market = body.market or coord.settings.default_market or ""
    config = DeploymentConfig(
        strategy=body.strategy,  # checked above
        replicas=body.replicas, timeout=body.timeout, market=market, schedule=body.schedule,
        max_spend=parse_nos(body.max_spend) if body.max_spend is not None else None,
        overlap=body.overlap, grace_s=body.grace_s, lead_s=body.lead_s)
    with coord.store.uow() as uow:
        if (first := await idempotency.replay(uow, request, signer, key, now)) is not None:
            return first  # type: ignore[return-value]
        d, _ = service.create(uow, signer, defn, config, now, name=body.name,
                              matcher=coord.matcher)
        view = deployment_view(uow, coord, d)
        await idempotency.remember(uow, request, signer, key, 201, view, now)
        uow.commit()
    return view


@router.get("")
async def list_deployments(coord: Coord, signer: Signer) -> ServiceDeploymentList:
    with coord.store.uow(write=False) as uow:
        return ServiceDeploymentList(deployments=[
            deployment_view(uow, coord, d) for d, _ in DeploymentRepo(uow.conn).all(signer)])


@router.get("/{ref}")
async def show(ref: str, coord: Coord, signer: Signer) -> ServiceDeploymentView:
    with coord.store.uow(write=False) as uow:
        d, _ = service.owned(uow, ref, signer)
        return deployment_view(uow, coord, d)


@router.get("/{ref}/events")
async def events(ref: str, coord: Coord, signer: Signer,
                 after: int = Query(0, ge=0, le=SQL_INT_MAX)) -> DeploymentEvents:
    with coord.store.uow(write=False) as uow:
        d, _ = service.owned(uow, ref, signer)
        rows = DeploymentRepo(uow.conn).events(d.id, after)
    return DeploymentEvents(events=[DeploymentEvent(**r) for r in rows],
                            next=rows[-1]["seq"] if rows else after)


@router.post("/{ref}/update")
async def update(ref: str, body: UpdateDeployment, coord: Coord,
                 signer: Signer) -> ServiceDeploymentView:
    defn = _definition(body.spec, body.spec_text)
    now = int(coord.now())
    with coord.store.uow() as uow:
        d = service.update(uow, ref, signer, now, definition=defn, replicas=body.replicas,
                           timeout=body.timeout, schedule=body.schedule, market=body.market,
                           max_spend=parse_nos(body.max_spend)
                           if body.max_spend is not None else None)
        d = service.reconcile(uow, d, now, coord.matcher)
        view = deployment_view(uow, coord, d)
        uow.commit()
    return view


@router.post("/{ref}/{action}")
async def set_status(ref: str, action: Literal["stop", "start", "archive"], coord: Coord,
                     signer: Signer) -> ServiceDeploymentView:
    status = {"stop": "stopped", "start": "active", "archive": "archived"}[action]
    with coord.store.uow() as uow:
        d = service.set_status(uow, ref, signer, status,  # type: ignore[arg-type]
                               int(coord.now()))
        view = deployment_view(uow, coord, d)
        uow.commit()
    return view


def deployment_view(uow: UnitOfWork, coord: Coordinator, d: Deployment) -> ServiceDeploymentView:
    repo = DeploymentRepo(uow.conn)
    _, name = repo.get(d.id)
    cfg = d.config
    replicas = service.replicas_of(uow, d)
    endpoints = _endpoints(uow, [r.job_id for r in replicas])
    running = [DeploymentReplica(
        job_id=r.job_id, revision=r.revision, state=r.state, healthy=r.healthy,
        unhealthy_since=r.unhealthy_since, replaces=r.replaces, stopping=r.stopping,
        deadline=r.deadline, node=uow.jobs.get(r.job_id).node,
        endpoints={op: url for op, url, _ in endpoints.get(r.job_id, [])})
        for r in replicas if r.state != "ended"]
    defn = _revision_definition(uow, d)
    spent = service.spent(uow, d)
    return ServiceDeploymentView(
        id=d.id, name=name, owner=d.owner, strategy=cfg.strategy, status=d.status,
        replicas=cfg.replicas, timeout=cfg.timeout, market=cfg.market, schedule=cfg.schedule,
        max_spend=cfg.max_spend, overlap=cfg.overlap, grace_s=cfg.grace_s, lead_s=cfg.lead_s,
        revision=d.revision, rolling_to=d.rolling_to, spent=spent, spent_nos=format_nos(spent),
        out_of_funds=d.out_of_funds, created_at=d.created_at, running=running,
        urls={str(p): f"/d/{d.id}/{p}/" for p in _ports(defn)}, private=_private(defn))


# ----------------------------------------------------------------------- the stable URL


def _revision_definition(uow: UnitOfWork, d: Deployment) -> JobDefinition:
    spec = uow.jobs.spec(DeploymentRepo(uow.conn).spec_hash(d.id, d.revision)) or "{}"
    return parse_job_definition(json.loads(spec))


def _ports(defn: JobDefinition) -> dict[int, str]:
    """Exposed container port → the op that exposes it (integers and port objects)."""
    out: dict[int, str] = {}
    for op in defn.ops:
        expose = getattr(getattr(op, "args", None), "expose", None)
        for element in expose if isinstance(expose, list) else [expose]:
            port = element if isinstance(element, int) and not isinstance(element, bool) \
                else getattr(element, "port", None)
            if isinstance(port, int):
                out.setdefault(port, op.id)
    return out


def _private(defn: JobDefinition) -> bool:
    return any(getattr(getattr(op, "args", None), "private", False) for op in defn.ops)


def _endpoints(uow: UnitOfWork, job_ids: list[str]) -> dict[str, list[tuple[str, str, bool]]]:
    """Per job: (service name, URL, healthy) as its node reported them."""
    if not job_ids:
        return {}
    from sqlalchemy import select

    s = t.gateway_services.c
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for row in uow.conn.execute(select(s.job_id, s.op_id, s.endpoint, s.healthy)
                                .where(s.job_id.in_(job_ids))):
        out.setdefault(str(row.job_id), []).append((str(row.op_id), str(row.endpoint),
                                                    bool(row.healthy)))
    return out


_turn = itertools.count()
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


@stable.api_route("/d/{ref}/{port}/{path:path}",
                  methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                  include_in_schema=False)
async def stable_url(ref: str, port: int, path: str, request: Request,
                     coord: Coord) -> Response:
    """Forward to a healthy replica of the deployment's current jobs, round robin; a
    replica that does not answer is skipped for the next one, so a replacement or a
    rollout does not fail the request. Streams the answer (SSE included)."""
    with coord.store.uow(write=False) as uow:
        repo = DeploymentRepo(uow.conn)
        d, _ = repo.get(ref)
        ports, private = _routing(uow, repo.spec_hash(d.id, d.revision))
        op = ports.get(port)
        if op is None:
            raise NotFound(f"deployment {ref} exposes no port {port}")
        jobs = repo.live_replicas(d.id)
        targets = [url for rows in _endpoints(uow, jobs).values()
                   for name, url, healthy in rows
                   if healthy and name in (op, f"{op}:{port}")]
    if private:
        signer, _ = await verify_request(request, coord)
        if signer != d.owner:
            raise Forbidden("this deployment is private: only its owner's signed requests "
                            "reach it")
    if not targets:
        raise Unavailable(f"deployment {ref} has no healthy replica on port {port} now")
    start = next(_turn)
    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    query = f"?{request.url.query}" if request.url.query else ""
    client = _http(request)
    last: Exception | None = None
    for i in range(len(targets)):
        base = targets[(start + i) % len(targets)]
        try:
            upstream = await client.send(client.build_request(
                request.method, f"{base}/{path}{query}", headers=headers, content=body),
                stream=True)
        except httpx.HTTPError as exc:
            last = exc
            continue

        async def relay(upstream: httpx.Response = upstream) -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        return StreamingResponse(relay(), status_code=upstream.status_code,
                                 headers=out_headers)
    raise Unavailable(f"no replica of deployment {ref} answered on port {port}: {last}")


def _http(request: Request) -> httpx.AsyncClient:
    """The app's one client to replicas (kept-alive connections; closed at shutdown)."""
    client: httpx.AsyncClient | None = getattr(request.app.state, "replica_http", None)
    if client is None:
        client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=2.0), trust_env=False,
                                   limits=httpx.Limits(max_keepalive_connections=64))
        request.app.state.replica_http = client
    return client


#: spec hash → (exposed port → op, private): definitions never change once stored
_ROUTING: dict[str, tuple[dict[int, str], bool]] = {}


def _routing(uow: UnitOfWork, digest: str) -> tuple[dict[int, str], bool]:
    found = _ROUTING.get(digest)
    if found is None:
        defn = parse_job_definition(json.loads(uow.jobs.spec(digest) or "{}"))
        found = (_ports(defn), _private(defn))
        if len(_ROUTING) > 10_000:
            _ROUTING.clear()
        _ROUTING[digest] = found
    return found
