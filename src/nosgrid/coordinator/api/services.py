"""Routes: the service registry (nodes report endpoints), API keys, deployments, usage.

Nodes call ``POST /v1/jobs/{id}/service`` when an exposed port of a running service job
passes its health checks (and again when it turns unhealthy). Clients register and
revoke gateway API keys, deploy models (scale to zero) and read their token usage.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES
from nosgrid.coordinator.gateway.runtime import Gateway
from nosgrid.core.apikeys import verify_key
from nosgrid.core.errors import Forbidden, InvalidApiKey, InvalidInput
from nosgrid.core.money import format_nos
from nosgrid.core.views import (
    DeploymentList,
    DeploymentStatus,
    DeploymentView,
    KeyDetail,
    KeyList,
    KeyRevoked,
    KeyView,
    ReplicaView,
    RequestRecordList,
    RequestRecordRow,
    ServiceView,
    Undeployed,
    UsageRow,
    UsageView,
)
from nosgrid.store.gateway import Deployment

router = APIRouter(prefix="/v1", tags=["services"], responses=ERROR_RESPONSES)


def get_gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


GW = Annotated[Gateway, Depends(get_gateway)]


class ServiceReport(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    op_id: str = Field(min_length=1, max_length=64)
    endpoint: str = Field(pattern=r"^https?://[^\s/]+$", max_length=255)
    healthy: bool
    model: str | None = Field(default=None, min_length=1, max_length=128)


class KeyRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=8, max_length=4096)
    label: str = Field(default="", max_length=200)


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/-]+$")
    spec: dict[str, Any]
    market: str = Field(min_length=1, max_length=64)
    min: int = Field(default=0, ge=0, le=16)
    max: int = Field(default=1, ge=1, le=16)
    idle_s: int = Field(default=300, ge=1, le=7 * 86_400)
    prompt_price: int = Field(default=1, ge=0, le=10**12)
    completion_price: int = Field(default=2, ge=0, le=10**12)


@router.post("/jobs/{job_id}/service")
async def report_service(job_id: str, body: ServiceReport, gw: GW,
                         signer: Signer) -> ServiceView:
    return ServiceView(**gw.report_service(job_id, signer, body.op_id, body.endpoint,
                                           body.healthy, body.model))


@router.post("/keys", status_code=201)
async def register_key(body: KeyRegistration, coord: Coord, gw: GW,
                       signer: Signer) -> KeyView:
    from nosgrid.store.gateway import GatewayRepo

    try:
        claims = verify_key(body.key, now=coord.now())
    except InvalidApiKey as exc:  # registering a bad key is bad input, not a bad login
        raise InvalidInput(exc.message) from None
    if claims.owner != signer:
        raise Forbidden("register keys signed by your own keypair")
    with coord.store.uow() as uow:
        GatewayRepo(uow.conn).add_key(claims, body.label, int(coord.now()))
        uow.commit()
    return KeyView(kid=claims.kid, owner=claims.owner, cap=claims.cap,
                   cap_nos=format_nos(claims.cap), expires_at=claims.expires_at,
                   models=list(claims.models))


@router.get("/keys")
async def list_keys(gw: GW, signer: Signer) -> KeyList:
    return KeyList(keys=[KeyDetail(**row, cap_nos=format_nos(row["cap"]),
                                   spent_nos=format_nos(row["spent"]))
                         for row in gw.keys_of(signer)])


@router.post("/keys/{kid}/revoke")
async def revoke_key(kid: str, gw: GW, signer: Signer) -> KeyRevoked:
    return KeyRevoked(**gw.revoke(kid, signer))


@router.get("/usage")
async def usage(gw: GW, signer: Signer) -> UsageView:
    return UsageView(usage=[UsageRow(**row, cost_nos=format_nos(row["cost"]))
                            for row in gw.usage(signer)])


@router.get("/usage/records")
async def usage_records(gw: GW, signer: Signer, limit: int = 100) -> RequestRecordList:
    """The caller's recorded requests, newest first, with their audits (issue 14)."""
    if not 1 <= limit <= 1_000:
        raise InvalidInput("limit must be from 1 to 1000")
    return RequestRecordList(records=[RequestRecordRow(**r) for r in gw.records(signer, limit)])


@router.get("/usage/records/{record_hash}")
async def usage_record(record_hash: str, gw: GW, signer: Signer) -> dict[str, Any]:
    """One of the caller's own usage records, as stored (its sha256 is ``record_hash``)."""
    return gw.record_of(record_hash, signer)


@router.post("/models/deployments", status_code=201)
async def deploy(body: DeployRequest, coord: Coord, gw: GW, signer: Signer) -> DeploymentView:
    if body.min > body.max:
        raise InvalidInput("--min must not exceed --max")
    d = Deployment(body.model, signer, body.market, json.dumps(body.spec), body.min, body.max,
                   body.idle_s, body.prompt_price, body.completion_price, int(coord.now()))
    return DeploymentView(**gw.deploy(d).view())


@router.get("/models/deployments")
async def deployments(gw: GW) -> DeploymentList:
    out = []
    for d in gw.deployments.values():
        replicas = gw.registry.for_model(d.model)
        out.append(DeploymentStatus(**d.view(), replicas=[
            ReplicaView(job_id=r.job_id, node=r.node, healthy=r.healthy,
                        outstanding=r.outstanding) for r in replicas],
            starting=[s.job_id for s in gw.starting.values() if s.model == d.model],
            cold_starts_s=[round(c.seconds or 0, 3) for c in gw.cold_starts
                           if c.model == d.model][-10:]))
    return DeploymentList(deployments=out)


@router.delete("/models/deployments/{model:path}")
async def undeploy(model: str, gw: GW, signer: Signer) -> Undeployed:
    gw.undeploy(model, signer)
    return Undeployed(model=model, deleted=True)
