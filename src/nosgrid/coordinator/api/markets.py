"""Routes: markets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES
from nosgrid.coordinator.services import economics, pricing
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.core.errors import Forbidden
from nosgrid.core.markets import MarketParams, parse_market_params
from nosgrid.core.views import MarketDetail, MarketNodeView

router = APIRouter(prefix="/v1/markets", tags=["markets"], responses=ERROR_RESPONSES)


@router.get("")
async def list_markets(coord: Coord) -> list[MarketParams]:
    with coord.store.uow(write=False) as uow:
        return uow.markets.all()


@router.get("/{name}")
async def show_market(name: str, coord: Coord) -> MarketDetail:
    """The market's terms, its nodes, and its reference price (the oracle's, or the
    configured price and why)."""
    with coord.store.uow(write=False) as uow:
        market = uow.markets.get(name)
        nodes = [n for n in uow.nodes.all() if name in n["markets"]]
        price = pricing.price_view(uow, market, int(coord.now()), coord.settings.oracle)
    return MarketDetail(
        **market.model_dump(),
        nodes_online=sum(1 for n in nodes if n["status"] == "online"),
        nodes_waiting=coord.notifier.waiting(name),
        price=price,
    )


@router.get("/{name}/nodes")
async def market_nodes(name: str, coord: Coord) -> list[MarketNodeView]:
    """Nodes serving the market, best reputation × stake first."""
    now = int(coord.now())
    with coord.store.uow(write=False) as uow:
        uow.markets.get(name)
        nodes = [n for n in uow.nodes.all() if name in n["markets"]]
        standings = economics.node_standings(uow, [n["id"] for n in nodes], now)
        rows = [MarketNodeView(id=n["id"], status=n["status"], **standings[n["id"]])
                for n in nodes]
    return sorted(rows, key=lambda r: (-r.reputation * (1 + r.stake) ** 0.5, r.id))


@router.post("", status_code=201)
async def create_market(params: dict[str, Any], coord: Coord, signer: Signer) -> MarketParams:
    if signer not in coord.settings.admin_keys:
        raise Forbidden("only the coordinator's admin keys may create markets")
    market = parse_market_params(params)
    with coord.store.uow() as uow:
        job_services.create_market(uow, market, int(coord.now()))
        uow.commit()
    return market
