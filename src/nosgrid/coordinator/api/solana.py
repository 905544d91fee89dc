"""Routes of Solana settlement: market info, relaying a client-signed approval, allowance
sync, the LiteSVM dev faucet, a job's payouts and on-chain verification.

The coordinator never holds a client key: ``nosgrid wallet approve`` reads
``GET /v1/solana/info``, builds and signs the approval locally and posts the signed bytes
to ``POST /v1/solana/submit``; with ``--settlement litesvm`` the chain lives inside the
coordinator, so this relay is the only way to reach it (on a real cluster it is a
convenience: the client could send to its RPC node and call ``/v1/solana/sync``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services.lifecycle import get_job_for
from nosgrid.core.errors import InvalidInput, NotFound
from nosgrid.core.money import format_nos, parse_nos
from nosgrid.core.views import (
    JobPayouts,
    OnchainVerifyReport,
    PayoutView,
    SolanaAccountView,
    SolanaFaucetView,
    SolanaInfo,
    SolanaSubmitted,
)
from nosgrid.settlement.onchain import SolanaBackend

router = APIRouter(prefix="/v1/solana", tags=["solana"], responses=ERROR_RESPONSES)


class SubmitRequest(BaseModel):
    transaction: str = Field(description="base64 of a signed legacy transaction",
                             max_length=4096)


class SolanaFaucetRequest(BaseModel):
    amount: str = Field(description="NOS to mint, e.g. '100'", max_length=32)


def _backend(coord: Coordinator) -> SolanaBackend:
    backend = coord.settlement
    if not isinstance(backend, SolanaBackend):
        raise NotFound("this coordinator settles locally; start it with --settlement litesvm "
                       "or --settlement solana for on-chain NOS")
    return backend


def _view(account: dict[str, Any]) -> dict[str, Any]:
    for key in ("onchain_balance", "allowance", "free", "reserved"):
        account[f"{key}_nos"] = format_nos(account[key])
    return account


@router.get("/info")
async def info(coord: Coord) -> SolanaInfo:
    """Mint, settlement authority (the delegate to approve), vaults and a recent blockhash."""
    return SolanaInfo(**await _backend(coord).info())


@router.post("/submit")
async def submit(body: SubmitRequest, coord: Coord, signer: Signer) -> SolanaSubmitted:
    """Relay a transaction the signer built and signed (an approval), then mirror the
    resulting allowance into the ledger."""
    backend = _backend(coord)
    try:
        raw = base64.b64decode(body.transaction, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("transaction must be base64") from exc
    signature = await backend.relay(raw, signer)
    account = await backend.sync(coord.store, signer, int(coord.now()))
    return SolanaSubmitted(signature=signature, **_view(account))


@router.post("/sync")
async def sync(coord: Coord, signer: Signer) -> SolanaAccountView:
    """Re-read the signer's on-chain allowance (after approving elsewhere)."""
    return SolanaAccountView(**_view(await _backend(coord).sync(coord.store, signer,
                                                                int(coord.now()))))


@router.get("/account")
async def account(coord: Coord, signer: Signer) -> SolanaAccountView:
    """On-chain balance and allowance next to what the ledger reserves."""
    return SolanaAccountView(**_view(await _backend(coord).account(coord.store, signer)))


@router.post("/faucet")
async def faucet(body: SolanaFaucetRequest, coord: Coord, signer: Signer) -> SolanaFaucetView:
    """Dev only (``--settlement litesvm --faucet``): SOL for fees and NOS minted on chain."""
    backend = _backend(coord)
    if not coord.settings.faucet:
        raise NotFound("this coordinator has no faucet (start it with --faucet)")
    amount = parse_nos(body.amount)
    if amount <= 0 or amount > coord.settings.faucet_cap_per_hour:
        raise InvalidInput(f"ask for 0 < amount ≤ {format_nos(coord.settings.faucet_cap_per_hour)}"
                           " NOS")
    balance = await backend.faucet(signer, amount)
    return SolanaFaucetView(pubkey=signer, onchain_balance=balance,
                            onchain_balance_nos=format_nos(balance))


@router.get("/payouts/{job_id}")
async def payouts(job_id: str, coord: Coord, signer: Signer) -> JobPayouts:
    """The on-chain payout of a settled job (status, signature, legs)."""
    backend = _backend(coord)
    with coord.store.uow(write=False) as uow:
        get_job_for(uow, job_id, signer)
    return JobPayouts(job_id=job_id, payouts=[PayoutView(**p) for p in
                                              backend.payouts(coord.store, job_id)])


@router.get("/verify")
async def verify(coord: Coord) -> OnchainVerifyReport:
    """``nosgrid ledger verify --onchain``: chain of hashes, anchors, balances on chain."""
    return OnchainVerifyReport(**await _backend(coord).reconcile(coord.store))
