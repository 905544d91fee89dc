"""Routes behind the dashboard's figures: market throughput, node stats and alerts, the
ledger explorer, tokenomics, and validating a job definition. All public reads (the
ledger and node standings are public anyway), except that none of them changes state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from nosgrid.coordinator.api.deps import Coord
from nosgrid.coordinator.api.schemas import ERROR_RESPONSES, SQL_INT_MAX, Body
from nosgrid.coordinator.gateway import Gateway
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import dashboard
from nosgrid.core.alerts import NodeSnapshot, changes
from nosgrid.core.dashboard_views import (
    AccountList,
    JobValidation,
    LedgerPage,
    MarketStats,
    NodeList,
    NodeStats,
    TokenomicsView,
)
from nosgrid.core.errors import InvalidJobSpec
from nosgrid.core.jobs.load import load_job_definition, spec_hash

router = APIRouter(prefix="/v1", tags=["dashboard"], responses=ERROR_RESPONSES)

#: how often an alert stream looks at its node again
ALERT_POLL_S = 1.0


#: one server-sent event of an alert stream: ``data`` is JSON (the node's status, or an
#: alert with its ``kind``, ``message`` and ``at``)
_SSE_EVENT: dict[str, Any] = {"type": "object", "properties": {
    "event": {"type": "string", "enum": ["status", "alert"]}, "data": {"type": "string"}}}


class ValidateRequest(Body):
    spec_text: str


@router.post("/jobs/validate")
async def validate_job(body: ValidateRequest) -> JobValidation:
    """What ``nosgrid job validate`` says of the definition (JSON or YAML); writes nothing."""
    return validation_of(body.spec_text)


def validation_of(text: str) -> JobValidation:
    try:
        defn = load_job_definition(text)
    except InvalidJobSpec as exc:
        return JobValidation(valid=False, errors=exc.errors or [exc.message])
    return JobValidation(valid=True, ops=len(defn.ops), spec_hash=spec_hash(defn))


@router.get("/markets/{name}/stats")
async def market_stats(name: str, coord: Coord) -> MarketStats:
    """Queue length, running jobs, nodes online and jobs ended in the last hour and day."""
    with coord.store.uow(write=False) as uow:
        return dashboard.market_stats(uow, name, int(coord.now()), coord.notifier.waiting(name))


@router.get("/nodes")
async def list_nodes(coord: Coord, offset: int = Query(0, ge=0, le=SQL_INT_MAX),
                     limit: int = Query(100, ge=1, le=1000)) -> NodeList:
    """The registered nodes, online first, best reputation first, a page at a time."""
    with coord.store.uow(write=False) as uow:
        return dashboard.node_list(uow, int(coord.now()), offset, limit)


@router.get("/nodes/{node_id}/stats")
async def node_stats(node_id: str, coord: Coord) -> NodeStats:
    """Uptime over 24 h and 7 d, earnings per day, jobs run, audits, slashes and the
    node's position in each of its markets' queues of idle nodes."""
    with coord.store.uow(write=False) as uow:
        return dashboard.node_stats(uow, node_id, int(coord.now()))


@router.get("/nodes/{node_id}/alerts", response_class=StreamingResponse, responses={200: {
    "description": "Server-sent events: `status`, then an `alert` event (offline, online, "
                   "slashed, unhealthy, idle) for each change while the stream is open",
    "content": {"text/event-stream": {"schema": _SSE_EVENT}}}})
async def node_alerts(node_id: str, request: Request, coord: Coord,
                      idle_minutes: float = Query(30.0, gt=0, le=10_080),
                      max_s: float = Query(3600.0, ge=0, le=86_400)) -> StreamingResponse:
    """Alerts for an operator, as server-sent events (an ``EventSource`` in the page).

    A stream lasts at most ``max_s`` and the coordinator's long-poll limit (30 s by
    default); it tells the client to reconnect at once, and each connection starts with
    the node's ``status``, so a client that compares it with the last one it saw misses
    nothing but the second in between.
    """
    gateway: Gateway = request.app.state.gateway

    def look() -> NodeSnapshot:
        return _snapshot(coord, gateway, node_id)

    first = look()  # a 404 for an unknown node, before streaming
    limit = min(max_s, coord.settings.long_poll_max_s)
    return StreamingResponse(_alert_stream(coord, look, node_id, first, idle_minutes * 60,
                                           limit),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})


def _snapshot(coord: Coordinator, gateway: Gateway, node_id: str) -> NodeSnapshot:
    with coord.store.uow(write=False) as uow:
        node = uow.nodes.get(node_id)
        hist = uow.economics.offences(node_id)
    unhealthy = sum(1 for r in gateway.registry.replicas.values()
                    if r.node == node_id and not r.healthy)
    return NodeSnapshot(status=node["status"], offences=hist.offences,
                        waiting_since=node["waiting_since"], unhealthy_replicas=unhealthy)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _alert_stream(coord: Coordinator, look: Callable[[], NodeSnapshot], node_id: str,
                        first: NodeSnapshot, idle_after: float,
                        limit_s: float) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    before, before_at = first, coord.now()
    yield b"retry: 1000\n\n"
    yield _sse("status", {"node": node_id, "status": first.status,
                          "offences": first.offences, "waiting_since": first.waiting_since,
                          "unhealthy_replicas": first.unhealthy_replicas})
    while loop.time() < end:
        await asyncio.sleep(min(ALERT_POLL_S, max(0.0, end - loop.time())))
        snap, now = look(), coord.now()
        for alert in changes(before, snap, now=now, idle_after=idle_after,
                             before_at=before_at):
            yield _sse("alert", {"node": node_id, "kind": alert.kind,
                                 "message": alert.message, "at": now})
        before, before_at = snap, now


@router.get("/ledger/entries")
async def ledger_entries(coord: Coord, from_seq: int = Query(0, ge=0, le=SQL_INT_MAX),
                         limit: int = Query(50, ge=1, le=500)) -> LedgerPage:
    """Journal entries from ``from_seq``, each with the body its hash covers and the
    coordinator's check of that hash and of the link to the entry before."""
    with coord.store.uow(write=False) as uow:
        return dashboard.ledger_page(uow, from_seq, limit, coord.settings.settlement)


@router.get("/ledger/accounts")
async def ledger_accounts(coord: Coord, prefix: str | None = Query(None, max_length=160),
                          limit: int = Query(100, ge=1, le=1000)) -> AccountList:
    """Account balances, largest first (``prefix``: e.g. ``wallet:`` or ``escrow:``)."""
    with coord.store.uow(write=False) as uow:
        return AccountList(accounts=dashboard.account_balances(uow, prefix, limit))


@router.get("/tokenomics")
async def tokenomics(coord: Coord, epochs: int = Query(52, ge=1, le=5000)) -> TokenomicsView:
    """Supply, genesis allocation, the emission curve and what was emitted so far."""
    with coord.store.uow(write=False) as uow:
        return dashboard.tokenomics(uow, epochs)


