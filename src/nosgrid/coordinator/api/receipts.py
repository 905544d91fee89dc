"""Routes: a job's result receipt and the attestor key chain (public: receipts are
published on chain anyway, and a consuming program's operator holds no nosgrid key)."""

from __future__ import annotations

from fastapi import APIRouter

from nosgrid.coordinator.api.deps import Coord
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES
from nosgrid.coordinator.services import receipts
from nosgrid.core.views import AttestorChainView, ReceiptView

router = APIRouter(prefix="/v1", tags=["receipts"], responses=ERROR_RESPONSES)


@router.get("/jobs/{job_id}/receipt")
async def job_receipt(job_id: str, coord: Coord) -> ReceiptView:
    """The job's current receipt: the signed 172 bytes (hex), their fields, and the
    transaction that published it on chain once confirmed."""
    with coord.store.uow(write=False) as uow:
        return receipts.receipt_view(uow, job_id)


@router.get("/attestor")
async def attestor_chain(coord: Coord) -> AttestorChainView:
    """Every attestor key epoch, each signed by the key before it."""
    with coord.store.uow(write=False) as uow:
        return receipts.chain_view(uow)
