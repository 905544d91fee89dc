"""Routes: the signer's stake (add, top up, unstake, withdraw) and staking rewards."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import Field

from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES, Body
from nosgrid.coordinator.services import economics
from nosgrid.core import staking
from nosgrid.core.money import format_nos, parse_nos
from nosgrid.core.views import ClaimView, StakeView

router = APIRouter(prefix="/v1", tags=["staking"], responses=ERROR_RESPONSES)


class StakeRequest(Body):
    action: Literal["stake", "top_up", "extend", "unstake", "restake", "withdraw"]
    amount: str | None = Field(default=None, max_length=32, description="NOS, e.g. '1000'")
    days: int | None = Field(default=None, ge=0, le=10_000)


def _view(coord: Coord, owner: str) -> dict[str, Any]:
    with coord.store.uow(write=False) as uow:
        view = economics.stake_view(uow, owner, int(coord.now()))
    for key in ("amount", "withdrawable", "pending_rewards"):
        if key in view:
            view[f"{key}_nos"] = format_nos(view[key])
    return view


@router.get("/stake")
async def my_stake(coord: Coord, signer: Signer) -> StakeView:
    return StakeView(**_view(coord, signer))


@router.post("/stake")
async def change_stake(body: StakeRequest, coord: Coord, signer: Signer) -> StakeView:
    now = int(coord.now())
    amount = parse_nos(body.amount) if body.amount is not None else None
    cmd: staking.StakeCommand
    if body.action == "stake":
        cmd = staking.Stake(signer, _need(amount, "amount"), _need(body.days, "days"), now)
    elif body.action == "top_up":
        cmd = staking.TopUp(signer, _need(amount, "amount"), now)
    elif body.action == "extend":
        cmd = staking.Extend(signer, _need(body.days, "days"), now)
    elif body.action == "unstake":
        cmd = staking.Unstake(signer, now)
    elif body.action == "restake":
        cmd = staking.Restake(signer, now)
    else:
        cmd = staking.Withdraw(signer, now)
    with coord.store.uow() as uow:
        economics.stake_command(uow, cmd)
        uow.commit()
    return StakeView(**_view(coord, signer))


@router.post("/rewards/claim")
async def claim(coord: Coord, signer: Signer) -> ClaimView:
    with coord.store.uow() as uow:
        res = economics.stake_command(uow, staking.ClaimRewards(signer, int(coord.now())))
        uow.commit()
    claimed = sum(p.amount for p in res.postings)
    return ClaimView(claimed=claimed, claimed_nos=format_nos(claimed), **_view(coord, signer))


def _need(value: int | None, name: str) -> int:
    from nosgrid.core.errors import InvalidInput

    if value is None:
        raise InvalidInput(f"`{name}` is required for this action", field=name)
    return value
