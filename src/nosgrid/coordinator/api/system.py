"""Routes: health, Prometheus metrics and ledger verification."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import generate_latest

from nosgrid.coordinator.api.deps import Coord
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES
from nosgrid.coordinator.services.accounts import verify_ledger
from nosgrid.core.ledger import REWARDS_POOL, STAKERS_POOL, TREASURY
from nosgrid.core.views import HealthView, LedgerSummary, LedgerVerifyReport

router = APIRouter(tags=["system"], responses=ERROR_RESPONSES)
_PROMETHEUS: dict[int | str, dict[str, Any]] = {200: {
    "description": "Prometheus text exposition format",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}}


@router.get("/healthz")
async def healthz(coord: Coord) -> HealthView:
    with coord.store.uow(write=False) as uow:
        head = uow.ledger.head()
    return HealthView(ok=True, ledger_seq=head[0] if head else None,
                      settlement=coord.settings.settlement)


@router.get("/metrics", response_class=Response, responses=_PROMETHEUS)
async def metrics(coord: Coord) -> Response:
    with coord.store.uow(write=False) as uow:
        counts = uow.jobs.count_by_state()
    for state, n in counts.items():
        coord.metrics.jobs_by_state.labels(state).set(n)
    return Response(generate_latest(coord.metrics.registry),
                    media_type="text/plain; version=0.0.4")


@router.get("/v1/ledger/summary")
async def ledger_summary(coord: Coord) -> LedgerSummary:
    """Protocol account balances (treasury, pools) and the ledger head; public."""
    with coord.store.uow(write=False) as uow:
        head = uow.ledger.head()
        pools = {name: uow.ledger.balance(name)
                 for name in (TREASURY, REWARDS_POOL, STAKERS_POOL)}
    return LedgerSummary(**pools, entries=(head[0] + 1) if head else 0,
                         head_hash=head[1] if head else None)


@router.get("/v1/ledger/verify")
async def ledger_verify(coord: Coord) -> LedgerVerifyReport:
    with coord.store.uow(write=False) as uow:
        return LedgerVerifyReport(**verify_ledger(uow).as_dict())
