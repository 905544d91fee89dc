"""Routes: the price oracle (docs/pricing.md): prices, asks, signed reports, reporters."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field

from nosgrid.coordinator.api.deps import Coord, Signer
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES, SQL_INT_MAX, Body
from nosgrid.coordinator.services import pricing
from nosgrid.core.identity import HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, request_message
from nosgrid.core.money import TOTAL_SUPPLY
from nosgrid.core.views import MarketPriceView, NosUsdView, OracleReportView, ReporterView

router = APIRouter(prefix="/v1", tags=["oracle"], responses=ERROR_RESPONSES)

_KEY = r"^[1-9A-HJ-NP-Za-km-z]{32,44}$"
_PRICE_MAX = max(TOTAL_SUPPLY, pricing.MAX_NOS_USD_MICROS)


class ReportRequest(Body):
    #: the open epoch: unix time // the oracle's epoch length (600 s by default)
    epoch: int = Field(ge=0, le=SQL_INT_MAX)
    #: base units per second (a market) or µUSD per NOS (``nos_usd``)
    price: int = Field(ge=1, le=_PRICE_MAX)


class AskRequest(Body):
    #: base units per second
    price: int = Field(ge=1, le=TOTAL_SUPPLY)


class ReporterRequest(Body):
    #: the operator the signing key reports for (base58 public key)
    operator: str = Field(pattern=_KEY)
    #: the operator's signature (base58) of ``nosgrid-oracle-reporter-v1:<reporter key>``
    consent: str = Field(min_length=64, max_length=100)


async def _signed(request: Request) -> pricing.SignedRequest:
    """The request as its key signed it (the route's signature check passed already)."""
    h = request.headers
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    body = await request.body()
    ts, nonce = int(h[HEADER_TIMESTAMP]), h[HEADER_NONCE]
    return pricing.SignedRequest(request_message(request.method, path, body, ts, nonce),
                                 h[HEADER_SIGNATURE], request.method, path, ts, nonce,
                                 pricing.signed_body(body))


@router.get("/markets/{name}/price")
async def market_price(name: str, coord: Coord) -> MarketPriceView:
    """The market's reference price: the oracle's (with its band and sources) or its
    configured price when too few fresh sources exist, and what a post is charged now."""
    with coord.store.uow(write=False) as uow:
        return pricing.price_view(uow, uow.markets.get(name), int(coord.now()),
                                  coord.settings.oracle)


@router.post("/markets/{name}/reports", status_code=201)
async def submit_report(name: str, body: ReportRequest, request: Request, coord: Coord,
                        signer: Signer) -> OracleReportView:
    """A registered reporter's signed price for the open epoch (``nos_usd``: the rate)."""
    signed = await _signed(request)
    with coord.store.uow() as uow:
        view = pricing.submit_report(uow, source=signer, market=name, epoch=body.epoch,
                                     price=body.price, request=signed, now=int(coord.now()),
                                     params=coord.settings.oracle)
        uow.commit()
    return view


@router.post("/markets/{name}/ask", status_code=201)
async def publish_ask(name: str, body: AskRequest, request: Request, coord: Coord,
                      signer: Signer) -> OracleReportView:
    """A node's ask for a market it serves (replaces its earlier ask)."""
    signed = await _signed(request)
    with coord.store.uow() as uow:
        view = pricing.publish_ask(uow, node=signer, market=name, price=body.price,
                                   request=signed, now=int(coord.now()),
                                   params=coord.settings.oracle)
        uow.commit()
    return view


@router.get("/oracle/nos_usd")
async def nos_usd(coord: Coord) -> NosUsdView:
    with coord.store.uow(write=False) as uow:
        return pricing.nos_usd_view(uow, int(coord.now()), coord.settings.oracle)


@router.post("/oracle/reporters", status_code=201)
async def register_reporter(body: ReporterRequest, coord: Coord,
                            signer: Signer) -> ReporterView:
    """Register the signing key as a price reporter of ``operator`` (both sign)."""
    with coord.store.uow() as uow:
        view = pricing.register_reporter(uow, reporter=signer, operator=body.operator,
                                         consent=body.consent, now=int(coord.now()),
                                         params=coord.settings.oracle)
        uow.commit()
    return view


@router.get("/oracle/reporters/{key}")
async def reporter(key: str, coord: Coord) -> ReporterView:
    with coord.store.uow(write=False) as uow:
        return pricing.reporter_view(uow, key, coord.settings.oracle)


@router.get("/oracle/reports/{digest}")
async def stored_report(digest: str, coord: Coord) -> OracleReportView:
    """A stored report or ask by hash, with what its key signed (evidence stays)."""
    with coord.store.uow(write=False) as uow:
        return pricing.report(uow, digest)
