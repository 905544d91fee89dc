"""Routes: a job's verification (for its client) and the market-wide audit summary."""

from __future__ import annotations

from fastapi import APIRouter

from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES
from nosgrid.coordinator.services import verification
from nosgrid.core.views import VerificationSummary, VerificationView

router = APIRouter(prefix="/v1", tags=["verification"], responses=ERROR_RESPONSES)


@router.get("/jobs/{job_id}/verification")
async def job_verification(job_id: str, coord: Coord, signer: Signer) -> VerificationView:
    """Status (held, waiting, auditing, disputed, passed, released, a verdict), the beacon,
    the auditor, the panel and the verdict's journal entry."""
    with coord.store.uow(write=False) as uow:
        return VerificationView.model_validate(verification.view(uow, job_id, signer))


@router.get("/verification/summary")
async def verification_summary(coord: Coord) -> VerificationSummary:
    """Held jobs by status, the audit pool, and audit compute ÷ all compute (overhead)."""
    with coord.store.uow(write=False) as uow:
        return VerificationSummary.model_validate(verification.summary(uow))
