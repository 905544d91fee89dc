"""Routes: a job's result receipt, the attestor key chain and what became of a request
paid on chain (public: all of it is on chain anyway, and a consuming program's operator
holds no nosgrid key)."""

from __future__ import annotations

from fastapi import APIRouter

from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES
from nosgrid.coordinator.services import chain_requests, receipts
from nosgrid.core.errors import Forbidden
from nosgrid.core.views import (
    AttestorChainView,
    AttestorEpochView,
    ChainRequestView,
    ReceiptView,
)

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


@router.post("/attestor/rotate", status_code=201)
async def rotate_attestor(coord: Coord, signer: Signer) -> AttestorEpochView:
    """Admin: move receipts to a new attestor key, vouched for by the current one (its
    Memo is published on chain with the next sender pass)."""
    if signer not in coord.settings.admin_keys:
        raise Forbidden("only the coordinator's admin keys may rotate the attestor key")
    if coord.receipts is None:
        raise Forbidden("this coordinator issues no receipts")
    with coord.store.uow() as uow:
        record = coord.receipts.keys.rotate(uow, int(coord.now()))
        uow.commit()
    return AttestorEpochView(epoch=record.epoch, key=record.key, signature=record.signature)


@router.get("/requests/{signature}")
async def chain_request(signature: str, coord: Coord) -> ChainRequestView:
    """A payment into the request vault: its job (and result), or its refunds and why."""
    with coord.store.uow(write=False) as uow:
        return chain_requests.request_view(uow, signature)
