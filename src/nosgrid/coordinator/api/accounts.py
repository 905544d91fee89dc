"""Routes: balance and journal of the signer, and the dev faucet."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from nosgrid.coordinator.api import idempotency
from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES, SQL_INT_MAX, FaucetRequest
from nosgrid.coordinator.services import accounts
from nosgrid.core.errors import NotFound
from nosgrid.core.ledger import stake_vault, wallet
from nosgrid.core.money import format_nos, parse_nos
from nosgrid.core.views import AccountView, FaucetView, JournalEntryView, JournalView

router = APIRouter(prefix="/v1", tags=["accounts"], responses=ERROR_RESPONSES)


@router.get("/accounts/me")
async def my_account(coord: Coord, signer: Signer) -> AccountView:
    with coord.store.uow(write=False) as uow:
        balance = uow.ledger.balance(wallet(signer))
        stake = uow.ledger.balance(stake_vault(signer))
    return AccountView(pubkey=signer, balance=balance, balance_nos=format_nos(balance),
                       stake=stake, stake_nos=format_nos(stake))


@router.get("/accounts/me/journal")
async def my_journal(coord: Coord, signer: Signer, limit: int = Query(50, ge=1, le=500),
                     before: int | None = Query(None, ge=0, le=SQL_INT_MAX)) -> JournalView:
    with coord.store.uow(write=False) as uow:
        rows = uow.ledger.account_journal(wallet(signer), limit=limit, before_seq=before,
                                          also=[stake_vault(signer)])
    entries = [JournalEntryView(**row, amount_nos=format_nos(row["amount"])) for row in rows]
    return JournalView(entries=entries, next=rows[-1]["seq"] if len(rows) == limit else None)


@router.post("/faucet")
async def faucet(body: FaucetRequest, request: Request, coord: Coord,
                 signer: Signer) -> FaucetView:
    """Dev NOS for the signer; with an ``Idempotency-Key`` a retry is granted once."""
    if not coord.settings.faucet or coord.settings.settlement != "local":
        raise NotFound("this coordinator has no faucet (start it with --faucet and local "
                       "settlement)")
    key = idempotency.key_of(request)
    amount = parse_nos(body.amount)
    now = int(coord.now())
    with coord.store.uow() as uow:
        if (first := await idempotency.replay(uow, request, signer, key, now)) is not None:
            return first  # type: ignore[return-value]
        balance = accounts.faucet(uow, signer, amount, now, coord.settings.faucet_cap_per_hour)
        view = FaucetView(pubkey=signer, balance=balance, balance_nos=format_nos(balance))
        await idempotency.remember(uow, request, signer, key, 200, view, now)
        uow.commit()
    return view
